"""Summaries of the judges' first-fail windows: rates, intervals, power, time to detect, targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from judges import NEVER
from sim import WINDOW_S

JUDGES = (
    "siskin", "oracle_sprt", "kayenta_deployed", "kayenta_calibrated", "kayenta_fixed", "threshold",
    "siskin_hard_1_2", "siskin_no_spread",
)
"""The last two are sensitivity checks, not product defaults (see ``judges.SISKIN_VARIANTS``)."""


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def detect_seconds(indices: Sequence[int]) -> np.ndarray:
    """Time to detect per run in seconds (end of the failing window); inf when never."""
    arr = np.asarray(indices, dtype=float)
    return np.where(arr == NEVER, math.inf, (arr + 1) * WINDOW_S)


def quantile_seconds(times: np.ndarray, q: float) -> float | None:
    """Time by which a share ``q`` of runs has detected (censored runs count as never); None if never."""
    if times.size == 0:
        return None
    value = float(np.sort(times)[max(0, math.ceil(q * times.size) - 1)])
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Detection:
    """One judge in one scenario cell."""

    runs: int
    power_15: float
    power_30: float
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, indices: Sequence[int]) -> Detection:
        """Summarise first-fail indices."""
        times = detect_seconds(indices)
        n = max(1, times.size)
        return cls(
            runs=times.size,
            power_15=float(np.sum(times <= 900) / n),
            power_30=float(np.sum(times <= 1800) / n),
            median_s=quantile_seconds(times, 0.5),
            p90_s=quantile_seconds(times, 0.9),
        )


@dataclass(frozen=True)
class Rate:
    """A false-rollback rate with its Wilson interval."""

    fails: int
    runs: int

    @property
    def rate(self) -> float:
        """Share of runs rolled back."""
        return self.fails / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval."""
        return wilson(self.fails, self.runs)

    def text(self) -> str:
        """E.g. ``0.40% [0.21%, 0.76%] (8/2000)``."""
        low, high = self.interval
        return f"{self.rate:.2%} [{low:.2%}, {high:.2%}] ({self.fails}/{self.runs})"


def fmt_seconds(value: float | None) -> str:
    """Seconds as ``270 s``, or ``>30 min`` when not reached."""
    return ">30 min" if value is None else f"{value:.0f} s"


def ttd_target(siskin: Detection, oracle: Detection, window: float = WINDOW_S, early_windows: int = 3) -> bool:
    """Siskin's median <= 1.5x the oracle's, or at most one window later when the oracle is that fast."""
    if oracle.median_s is None:
        return True
    if siskin.median_s is None:
        return False
    if siskin.median_s <= 1.5 * oracle.median_s:
        return True
    return oracle.median_s <= early_windows * window and siskin.median_s <= oracle.median_s + window


def not_later(siskin: Detection, other: Detection) -> bool:
    """Siskin's median time to detect is no later than ``other``'s (never = infinitely late)."""
    mine = math.inf if siskin.median_s is None else siskin.median_s
    theirs = math.inf if other.median_s is None else other.median_s
    return mine <= theirs
