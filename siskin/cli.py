"""Command line: `siskin` and `kubectl-siskin`."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `siskin` command."""
    print("siskin: not implemented yet", file=sys.stderr)
    return 2
