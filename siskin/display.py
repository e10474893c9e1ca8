"""Text a person reads: one-line progress, per-metric figures, tables. Pure formatting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def metric_lines(status: dict[str, Any]) -> list[str]:
    """One line per judged metric of the newest analysis in a Rollout's status."""
    lines: list[str] = []
    for key in ("stepAnalysis", "backgroundAnalysis"):
        progress = status.get(key) or {}
        for template, run in (progress.get("runs") or {}).items():
            state = run.get("state") or {}
            for metric in state.get("metrics") or []:
                latest = metric.get("latest")
                if latest:
                    lines.append(f"{template}/{metric.get('name')}: {metric_summary(latest)}")
    return lines


def metric_summary(verdict: dict[str, Any]) -> str:
    """``Pass  canary 2.0% vs baseline 2.1% (1520/1498 req), ratio 0.95 [0.61, 1.48], e 0.3/200``."""
    parts = [f"{verdict.get('verdict', '?'):<12}"]
    canary, baseline = verdict.get("canaryRate"), verdict.get("baselineRate")
    if canary is not None and baseline is not None:
        parts.append(f"canary {100 * canary:.2f}% vs baseline {100 * baseline:.2f}% "
                     f"({verdict.get('canaryRequests', 0)}/{verdict.get('baselineRequests', 0)} req)")
    ratio = verdict.get("ratioEstimate")
    if ratio is not None:
        low, high = verdict.get("ratioLow"), verdict.get("ratioHigh")
        interval = f" [{_num(low)}, {_num(high)}]" if low is not None or high is not None else ""
        parts.append(f"ratio {ratio:.2f}{interval}")
    if verdict.get("pValue") is not None:
        parts.append(f"p {_num(verdict['pValue'])}")
    if verdict.get("eValue") is not None and verdict.get("threshold") is not None:
        parts.append(f"e {_num(verdict['eValue'])}/{_num(verdict['threshold'])}")
    if verdict.get("verdict") in ("Fail", "Error", "Inconclusive") or len(parts) == 1:
        parts.append(f"— {verdict.get('reason', '')}")
    return " ".join(parts)


def _num(value: Any) -> str:
    if value is None:
        return "∞"
    return f"{float(value):.3g}"


def progress_line(status: dict[str, Any], steps: int) -> str:
    """``Progressing step 2/4 weight 25 verdict Running — message``."""
    index = status.get("currentStepIndex")
    step = f"step {min(index + 1, steps)}/{steps}" if index is not None and steps else "step -"
    return (f"{status.get('phase', 'Pending'):<11} {step:<9} weight {status.get('canaryWeight', 0):>3}  "
            f"verdict {status.get('verdict') or '-':<12} {status.get('message', '')}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [list(map(str, headers))] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells)
