"""From per-track Prometheus range results to aligned count windows.

The judge wants integers per non-overlapping window: requests and bad events
for canary and baseline. Prometheus gives floats (``increase()`` extrapolates),
sometimes NaN or infinities, sometimes nothing for a track. This module decides,
explicitly and in one place, what each of those means:

- a value is rounded to the nearest integer (``increase()`` extrapolation noise);
- no ``requests`` sample for a track in a window -> window skipped ("no <track> requests sample");
- NaN or +/-Inf in any value -> window skipped ("not a number");
- a negative value -> window skipped ("negative count"); ``increase()`` never
  yields one, so it means a hand-written query subtracts the wrong way;
- a value above ``MAX_COUNT`` -> window skipped ("implausibly large count");
- zero requests on both tracks -> window skipped ("no traffic");
- no ``events`` series (or sample) for a track -> zero events: a counter with a
  ``code="5.."`` label does not exist until the first error happens;
- more events than requests after rounding -> events clipped to requests, counted as clipped;
- counter resets are handled by ``increase()`` itself inside Prometheus.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .provider import TrackSeries

MAX_COUNT = 10**12
"""More events than this in one window is a broken query or exporter, not traffic."""

CANARY = "canary"
BASELINE = "baseline"


@dataclass(frozen=True)
class CountWindow:
    """Counts of one analysis window ``(start, end]`` for the canary and the baseline."""

    start: float
    end: float
    canary_requests: int
    baseline_requests: int
    canary_events: int
    baseline_events: int

    @property
    def seconds(self) -> float:
        """Window length."""
        return self.end - self.start


@dataclass(frozen=True)
class WindowSet:
    """The usable windows and an account of the ones that were not."""

    windows: list[CountWindow]
    expected: int
    skipped: dict[str, int] = field(default_factory=dict)
    clipped: int = 0

    @property
    def usable(self) -> int:
        """How many windows the judge can use."""
        return len(self.windows)

    def summary(self) -> str:
        """One line: how many windows were usable and why the others were not."""
        text = f"{self.usable} of {self.expected} windows usable"
        if self.skipped:
            reasons = ", ".join(f"{reason} ({count})" for reason, count in sorted(self.skipped.items()))
            text += f"; skipped: {reasons}"
        if self.clipped:
            text += f"; {self.clipped} with events clipped to requests"
        return text


def window_ends(start: float, step_seconds: float, count: int) -> list[float]:
    """``count`` evaluation times ``start + k * step`` (k = 0..count-1): the ends of the windows."""
    return [start + k * step_seconds for k in range(count)]


def _index(series: TrackSeries, track: str) -> dict[int, float]:
    return {_key(ts): value for ts, value in series.get(track, [])}


def _key(timestamp: float) -> int:
    """Timestamps compared at millisecond precision (Prometheus' own resolution)."""
    return round(timestamp * 1000)


def _count(value: float) -> int | str:
    """The rounded count, or the reason the value is unusable."""
    if math.isnan(value) or math.isinf(value):
        return "not a number"
    if value < -0.5:
        return "negative count"
    if value > MAX_COUNT:
        return "implausibly large count"
    return max(0, round(value))


def build_windows(
    ends: Sequence[float],
    window_seconds: float,
    requests: TrackSeries,
    events: TrackSeries | None = None,
    fast: TrackSeries | None = None,
) -> WindowSet:
    """Align requests with events (or with ``fast`` requests, events = requests - fast) per window end.

    Exactly one of ``events`` and ``fast`` is given. See the module docstring for
    how missing, non-finite and negative values are treated.
    """
    if (events is None) == (fast is None):
        raise ValueError("give exactly one of events or fast")
    req = {track: _index(requests, track) for track in (CANARY, BASELINE)}
    evt = {track: _index(events, track) for track in (CANARY, BASELINE)} if events is not None else None
    fst = {track: _index(fast, track) for track in (CANARY, BASELINE)} if fast is not None else None

    usable: list[CountWindow] = []
    skipped: Counter[str] = Counter()
    clipped = 0
    for end in ends:
        key = _key(end)
        counts: dict[str, tuple[int, int]] = {}
        reason: str | None = None
        for track in (CANARY, BASELINE):
            if key not in req[track]:
                reason = f"no {track} requests sample"
                break
            n = _count(req[track][key])
            if isinstance(n, str):
                reason = n
                break
            if evt is not None:
                x = _count(evt[track].get(key, 0.0))
            else:
                assert fst is not None
                if key not in fst[track]:
                    reason = f"no {track} bucket sample"
                    break
                good = _count(fst[track][key])
                x = good if isinstance(good, str) else max(0, n - good)
            if isinstance(x, str):
                reason = x
                break
            counts[track] = (n, x)
        if reason is None and counts[CANARY][0] == 0 and counts[BASELINE][0] == 0:
            reason = "no traffic"
        if reason is not None:
            skipped[reason] += 1
            continue
        (nc, xc), (nb, xb) = counts[CANARY], counts[BASELINE]
        if xc > nc or xb > nb:
            clipped += 1
            xc, xb = min(xc, nc), min(xb, nb)
        usable.append(CountWindow(end - window_seconds, end, nc, nb, xc, xb))
    return WindowSet(windows=usable, expected=len(ends), skipped=dict(skipped), clipped=clipped)
