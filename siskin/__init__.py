"""Siskin: progressive delivery for Kubernetes with statistically judged canaries.

The subpackages live in top-level folders of the source tree (``operator/``,
``analysis/``, ``sandbox/``, ...); a wheel maps them under ``siskin/``. The
``operator/`` folder deliberately has no ``__init__.py``: with one, running
``python -m ...`` from the source tree would let it shadow the standard
library's ``operator`` module. ``siskin.operator`` is therefore a namespace
package, found in a source checkout through the folder added to ``__path__`` below.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_SOURCE_TREE = _Path(__file__).resolve().parent.parent
if (_SOURCE_TREE / "operator" / "decide.py").is_file() and str(_SOURCE_TREE) not in __path__:
    __path__.append(str(_SOURCE_TREE))
