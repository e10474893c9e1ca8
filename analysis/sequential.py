"""The sequential judge: anytime-valid evidence that a canary is worse, or good enough.

Model (research-stats.md §4). In window ``i`` the canary serves ``n_ci`` and the
baseline ``n_bi`` requests; ``rho_i = n_ci / (n_ci + n_bi)``. Given that one of
the ``e_i`` bad events of the window happens, it is a canary event with
probability ``rho_i r / (1 + rho_i (r - 1))`` where ``r`` is the canary/baseline
ratio of per-request event rates. Shared load changes cancel, and changing
weights are handled exactly because every window keeps its own ``rho_i``:

    l_t(r) = X_c log r - sum_i e_i log(1 + rho_i (r - 1))

- Two kinds of noise sit on top of that binomial split, and the judge models
  both rather than mistaking them for a regression:

  - Spread. Two healthy tracks of pods never have exactly the same rates (nodes,
    caches, pod placement): the realised ratio is ``r = r_v h`` where ``r_v`` is
    the version's effect and ``log h ~ N(0, tau^2)`` with ``tau = log(spread) / 2``
    (``spread`` is the ratio two healthy tracks stay within, about 95% of the time).
  - Bursts. Within a window the tracks' rates wobble further, which inflates
    the variance of the split by ``phi_i = 1 + (e_i - 1) p_i (1 - p_i) s^2``
    (``p_i`` the canary's share of the window's events). ``s^2`` is estimated from
    the windows before ``i`` (method of moments around the running maximum-
    likelihood ratio), starting from a prior of ``BURST_PRIOR_S2`` worth
    ``BURST_PRIOR_WINDOWS`` windows. Each window's log-likelihood is divided by ``phi_i``
    (quasi-likelihood), which keeps the e-process's increments calibrated.

- FAIL test, H0: ``r_v <= tolerance``. ``E_t`` is the Bayes factor of two mixtures
  of the tempered likelihood over a grid of ``log r``: the alternative puts
  ``log r - log tolerance = u + log h`` with ``u`` half-normal (scale
  ``ALT_SCALE``), the null ``log r - log tolerance = log h``. Under the null,
  averaged over the spread, it is a nonnegative martingale in the counts, so by
  Ville's inequality P(ever E_t >= M / alpha) <= alpha / M. ``spread: 1`` makes
  the null a point at ``tolerance`` (a hard boundary). FAIL is sticky: the judge
  uses the largest ``E_t`` over every prefix of the windows. As data grow, both
  mixtures concentrate on the true ratio and ``E_t`` tends to the ratio of their
  weights there, so ratios healthy pods could plausibly show never fail (with
  spread 1.2 and M / alpha = 200: below about 1.4); ``maxRatio`` passes them.
- Direction. ``decrease`` runs the same test with canary and baseline swapped
  (H0: r >= 1 / tolerance); ``either`` averages the two one-sided e-processes,
  which splits alpha evenly between the sides and stays anytime-valid (an
  average of supermartingales is one). PASS then needs the confidence
  sequence's lower end >= 1 / max_ratio (decrease) or both ends inside.
- Confidence sequence: the ratios ``r`` whose two-sided mixture (log s ~ N(0, 1))
  of the same tempered likelihood stays below ``M / alpha``. PASS needs its upper
  end <= ``max_ratio``, enough analysed time and events, and at least
  ``MIN_WINDOWS_FOR_PASS`` windows.
- Sample-ratio mismatch: the same machinery on request counts (canary vs
  baseline should be split ``expected_canary_share``), two one-sided tests
  against ``1 +/- srm_tolerance`` averaged into one e-value. A mismatch makes the
  verdict Inconclusive, never Pass. A FAIL still wins: the fail test conditions
  on the observed split of each window, so it stays valid when the split is off.

Everything here is pure: lists of counts in, a :class:`MetricVerdict` out. No
input makes it raise or pass without evidence.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, logsumexp, xlog1py, xlogy

from .verdict import MetricVerdict
from .windows import MAX_COUNT, CountWindow

FloatArray = npt.NDArray[np.float64]

ALMOST_ALL = 0.99
"""Both arms counting at least this share of requests as events means the events query is wrong."""
MIN_WINDOWS_FOR_PASS = 3
"""A PASS on one or two windows would rest on whatever happened in a few seconds; never do that."""

ALT_SCALE = 0.7
"""Scale of the half-normal mixture over log(r_v / tolerance) under the alternative (a doubling is ~1 sd)."""
BURST_PRIOR_S2 = 0.25
"""Prior within-window variance of the tracks' log-ratio before the data show it (0.5 sd: bursts of +-50%)."""
BURST_PRIOR_WINDOWS = 3.0
"""The burst prior weighs as much as this many windows like the ones seen so far."""

_FAIL_LOG_R = np.arange(-150, 351) / 100.0
"""Grid of log(r / tolerance) for the fail test's mixtures (0 is exactly on it)."""
_ALT_U = np.linspace(0.005, 3.0, 600)
_NEGLIGIBLE_LOG_WEIGHT = -40.0
_CS_LOG_S = np.linspace(-3.0, 3.0, 61)
_CS_LOG_W = -(_CS_LOG_S**2) / 2 - logsumexp(-(_CS_LOG_S**2) / 2)
_CANDIDATE_LOG_R = np.linspace(-5.0, 5.0, 1001)
_BURST_LOG_R: FloatArray = np.arange(-100, 101, dtype=np.float64) * 0.05
_MAX_REPORTED_E = 1e300
_RATE_GRID = np.minimum(np.logspace(-9.0, 0.0, 1801), 1.0 - 1e-12)
_JEFFREYS = 0.5


@dataclass(frozen=True)
class JudgeSettings:
    """How strictly one metric is judged."""

    alpha: float
    metric_count: int = 1
    tolerance: float = 1.0
    spread: float = 1.2
    """Ratio two healthy tracks stay within (~95%): the null's spread around ``tolerance``; 1 = hard boundary."""
    max_ratio: float = 1.5
    pass_below_rate: float | None = None
    """Also pass once the canary's own event rate is shown below this (direction increase only)."""
    min_events: int = 20
    min_duration_seconds: float = 0.0
    expected_canary_share: float = 0.5
    srm_tolerance: float = 0.1
    event_noun: str = "errors"
    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which way the canary may not move: ``decrease`` fails on r < 1/tolerance, ``either`` on both sides."""

    def __post_init__(self) -> None:
        for field_name in ("alpha", "tolerance", "spread", "max_ratio", "min_duration_seconds",
                           "expected_canary_share", "srm_tolerance", "pass_below_rate"):
            value = getattr(self, field_name)
            if value is None and field_name == "pass_below_rate":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"invalid JudgeSettings: {field_name} {value!r} must be a number")
            object.__setattr__(self, field_name, float(value))
        for field_name in ("metric_count", "min_events"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"invalid JudgeSettings: {field_name} {value!r} must be a whole number")
            object.__setattr__(self, field_name, int(value))
        problems = []
        if not 0.0 < self.alpha < 1.0:
            problems.append(f"alpha {self.alpha} must be in (0, 1)")
        if self.metric_count < 1:
            problems.append(f"metric_count {self.metric_count} must be a whole number >= 1")
        for field_name in ("tolerance", "spread"):
            value = getattr(self, field_name)
            if not (math.isfinite(value) and value >= 1.0):
                problems.append(f"{field_name} {value} must be a finite number >= 1")
        if not (math.isfinite(self.max_ratio) and self.max_ratio > 1.0):
            problems.append(f"max_ratio {self.max_ratio} must be a finite number > 1")
        if self.pass_below_rate is not None and not 0.0 < self.pass_below_rate < 1.0:
            problems.append(f"pass_below_rate {self.pass_below_rate} must be in (0, 1)")
        if self.pass_below_rate is not None and self.direction != "increase":
            problems.append("pass_below_rate applies only to direction 'increase'")
        if self.direction not in ("increase", "decrease", "either"):
            problems.append(f"direction {self.direction!r} must be 'increase', 'decrease' or 'either'")
        if not 0.0 < self.expected_canary_share < 1.0 or not 0.0 < self.srm_tolerance < 1.0:
            problems.append("expected_canary_share and srm_tolerance must be in (0, 1)")
        if not (self.min_events >= 0 and 0.0 <= self.min_duration_seconds < math.inf):
            problems.append("min_events and min_duration_seconds must be >= 0 and finite")
        if problems:
            raise ValueError("invalid JudgeSettings: " + "; ".join(problems))

    @property
    def threshold(self) -> float:
        """E-value at which the metric fails: M / alpha (alpha split evenly over M metrics)."""
        return self.metric_count / self.alpha


@dataclass(frozen=True)
class _Arrays:
    canary_requests: FloatArray
    baseline_requests: FloatArray
    canary_events: FloatArray
    baseline_events: FloatArray
    seconds: FloatArray

    @property
    def events(self) -> FloatArray:
        return self.canary_events + self.baseline_events

    @property
    def canary_share(self) -> FloatArray:
        total = self.canary_requests + self.baseline_requests
        return np.divide(self.canary_requests, total, out=np.zeros_like(total), where=total > 0)


def window_log_likelihoods(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, log_ratios: FloatArray
) -> FloatArray:
    """Per window (rows) and ``r = exp(log_ratios)`` (columns): log-likelihood of the canary/baseline event split."""
    result: FloatArray = canary_events[:, None] * log_ratios[None, :] - total_events[:, None] * np.log1p(
        canary_share[:, None] * np.expm1(log_ratios)[None, :]
    )
    return result


def log_likelihood_paths(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, log_ratios: FloatArray
) -> FloatArray:
    """``l_t(r)`` for every prefix t (rows) and every ``r = exp(log_ratios)`` (columns), up to a constant."""
    result: FloatArray = np.cumsum(
        window_log_likelihoods(canary_events, total_events, canary_share, log_ratios), axis=0
    )
    return result


def log_one_sided_e_process(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, null_ratio: float
) -> FloatArray:
    """log E_t for H0: r <= null_ratio, plain binomial, hard boundary (the sample-ratio test uses it)."""
    return log_fail_mixture(canary_events, total_events, canary_share, null_ratio, 1.0, np.ones_like(canary_events))


def burst_inflation(canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray) -> FloatArray:
    """``phi_i`` per window: how much bursts inflate the variance of its event split, from the windows before it.

    After each window the residuals of all windows so far are taken against
    that window's maximum-likelihood ratio (on a coarse grid, so the running
    sums cost O(windows x grid) rather than O(windows^2)).
    """
    count = canary_events.size
    if count == 0:
        return np.ones(0)
    paths = log_likelihood_paths(canary_events, total_events, canary_share, _BURST_LOG_R)
    nearest = np.argmax(paths, axis=1)  # maximum-likelihood ratio (grid index) after each window
    fitted_log = _BURST_LOG_R[nearest]
    share = _event_share(canary_share[:, None], np.exp(_BURST_LOG_R)[None, :])  # [window, grid ratio]
    variance = share * (1.0 - share)
    events = total_events[:, None]
    excess = np.cumsum((canary_events[:, None] - events * share) ** 2 - events * variance, axis=0)
    information = np.cumsum(events * (events - 1.0) * variance**2, axis=0)
    rows = np.arange(count)
    excess_now, information_now = excess[rows, nearest], information[rows, nearest]
    prior_weight = BURST_PRIOR_WINDOWS * information_now / (rows + 1.0)
    s2 = np.divide(
        excess_now + prior_weight * BURST_PRIOR_S2,
        information_now + prior_weight,
        out=np.full(count, BURST_PRIOR_S2),
        where=information_now > 0,
    )
    s2_before = np.concatenate(([BURST_PRIOR_S2], np.maximum(s2[:-1], 0.0)))
    share_now = _event_share(canary_share, np.exp(np.concatenate(([0.0], fitted_log[:-1]))))
    result: FloatArray = 1.0 + np.maximum(total_events - 1.0, 0.0) * share_now * (1.0 - share_now) * s2_before
    return result


def log_fail_mixture(
    canary_events: FloatArray,
    total_events: FloatArray,
    canary_share: FloatArray,
    tolerance: float,
    spread: float,
    inflation: FloatArray,
) -> FloatArray:
    """log E_t per prefix t: alternative vs null mixture of the tempered likelihood (see the module docstring)."""
    if canary_events.size == 0:
        return np.zeros(0)
    log_grid, log_null, log_alt = _fail_log_weights(spread)
    per_window = window_log_likelihoods(canary_events, total_events, canary_share, math.log(tolerance) + log_grid)
    paths = np.cumsum(per_window / inflation[:, None], axis=0)
    result: FloatArray = logsumexp(paths + log_alt, axis=1) - logsumexp(paths + log_null, axis=1)
    return result


@functools.lru_cache(maxsize=64)
def _fail_log_weights(spread: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Grid points of log(r / tolerance) with weight, and the null's (spread) and the alternative's log weights."""
    log_u_weights = -(_ALT_U**2) / (2 * ALT_SCALE**2)
    log_u_weights -= logsumexp(log_u_weights)
    tau = math.log(spread) / 2
    if tau <= 0.0:
        log_null = np.where(_FAIL_LOG_R == 0.0, 0.0, -np.inf)
        log_alt = np.where(_FAIL_LOG_R > 0.0, -(_FAIL_LOG_R**2) / (2 * ALT_SCALE**2), -np.inf)
    else:
        log_null = -(_FAIL_LOG_R**2) / (2 * tau**2)
        shifted = _FAIL_LOG_R[:, None] - _ALT_U[None, :]
        log_alt = logsumexp(log_u_weights[None, :] - shifted**2 / (2 * tau**2), axis=1)
    log_null, log_alt = log_null - logsumexp(log_null), log_alt - logsumexp(log_alt)
    kept = (log_null > _NEGLIGIBLE_LOG_WEIGHT) | (log_alt > _NEGLIGIBLE_LOG_WEIGHT)
    return _FAIL_LOG_R[kept], log_null[kept], log_alt[kept]


def _event_share(canary_share: FloatArray, ratio: FloatArray) -> FloatArray:
    """Chance that one event is the canary's, given its share of requests and the ratio."""
    result: FloatArray = canary_share * ratio / (1.0 + canary_share * (ratio - 1.0))
    return result


def log_fail_e_process(windows: Sequence[CountWindow], tolerance: float, spread: float = 1.2) -> FloatArray:
    """log E_t of the fail test after each window (H0: the version's canary/baseline ratio <= tolerance)."""
    return log_directed_e_process(windows, tolerance, "increase", spread)


def log_directed_e_process(
    windows: Sequence[CountWindow],
    tolerance: float,
    direction: Literal["increase", "decrease", "either"],
    spread: float = 1.2,
    inflation: FloatArray | None = None,
) -> FloatArray:
    """log E_t of the fail test in ``direction`` (see the module docstring) after each window.

    ``inflation``: the windows' :func:`burst_inflation`, when the caller has it already.
    """
    arrays = _arrays(windows)
    events, share = arrays.events, arrays.canary_share
    if inflation is None:
        inflation = burst_inflation(arrays.canary_events, events, share)
    up = log_fail_mixture(arrays.canary_events, events, share, tolerance, spread, inflation)
    if direction == "increase":
        return up
    down = log_fail_mixture(arrays.baseline_events, events, 1.0 - share, tolerance, spread, inflation)
    if direction == "decrease":
        return down
    both: FloatArray = np.logaddexp(up, down) - math.log(2.0)
    return both


def log_srm_e_process(
    windows: Sequence[CountWindow], expected_canary_share: float = 0.5, tolerance: float = 0.1
) -> FloatArray:
    """log e-value per prefix that the canary's request share is off by more than ``tolerance`` (relative)."""
    arrays = _arrays(windows)
    if arrays.seconds.size == 0:
        return np.zeros(0)
    total = arrays.canary_requests + arrays.baseline_requests
    share = np.full_like(total, expected_canary_share)
    null = 1.0 + tolerance
    log_up = log_one_sided_e_process(arrays.canary_requests, total, share, null)
    log_down = log_one_sided_e_process(arrays.baseline_requests, total, 1.0 - share, null)
    result: FloatArray = np.logaddexp(log_up, log_down) - math.log(2.0)
    return result


def confidence_sequence(
    windows: Sequence[CountWindow], level_threshold: float, inflation: FloatArray | None = None
) -> tuple[float, float | None]:
    """Bounds (low, high) on the ratio, valid at every look with error <= 1 / level_threshold.

    ``high`` is ``None`` when the data cannot bound the ratio (no baseline events).
    """
    arrays = _arrays(windows)
    if arrays.seconds.size == 0:
        return 0.0, None
    share, events = arrays.canary_share, arrays.events
    if inflation is None:
        inflation = burst_inflation(arrays.canary_events, events, share)
    loglik_cand = _final_loglik(arrays.canary_events, events, share, _CANDIDATE_LOG_R, inflation)
    loglik_mix = _final_loglik(arrays.canary_events, events, share, _CS_LOG_S, inflation)
    log_mixture = float(logsumexp(loglik_mix + _CS_LOG_W))
    inside = np.nonzero(log_mixture - loglik_cand < math.log(level_threshold))[0]
    if inside.size == 0:  # the maximum likelihood ratio lies off the grid
        estimate = int(np.argmax(loglik_cand))
        inside = np.array([estimate])
    low_index, high_index = int(inside[0]), int(inside[-1])
    low = 0.0 if low_index == 0 else math.exp(_CANDIDATE_LOG_R[low_index])
    high = None if high_index == _CANDIDATE_LOG_R.size - 1 else math.exp(_CANDIDATE_LOG_R[high_index])
    return low, high


def rate_upper_bound(events: int, requests: int, level_threshold: float) -> float:
    """Upper end of an anytime-valid confidence sequence for a per-request event rate, error <= 1 / level_threshold.

    Robbins' mixture: the rates ``p`` whose Beta(1/2, 1/2) mixture likelihood
    ratio against ``p`` stays below ``level_threshold``, treating requests as
    independent. 1.0 without requests.
    """
    if requests <= 0:
        return 1.0
    failures = requests - events
    log_mixture = float(betaln(events + _JEFFREYS, failures + _JEFFREYS) - betaln(_JEFFREYS, _JEFFREYS))
    log_likelihood = xlogy(events, _RATE_GRID) + xlog1py(failures, -_RATE_GRID)
    inside = np.nonzero(log_mixture - log_likelihood < math.log(level_threshold))[0]
    return float(_RATE_GRID[inside[-1]]) if inside.size else events / requests


def judge(
    name: str, windows: Sequence[CountWindow], settings: JudgeSettings, *, window_note: str = ""
) -> MetricVerdict:
    """Pass, Fail or Inconclusive for one metric from all its windows so far (never raises on data)."""
    valid, ignored = _usable(windows)
    note = "; ".join(part for part in (window_note, ignored) if part)
    threshold = settings.threshold
    if not valid:
        reason = "no usable data yet" + (f" ({note})" if note else "")
        return MetricVerdict(name=name, verdict="Inconclusive", reason=reason, threshold=threshold)

    arrays = _arrays(valid)
    nc, nb = int(arrays.canary_requests.sum()), int(arrays.baseline_requests.sum())
    xc, xb = int(arrays.canary_events.sum()), int(arrays.baseline_events.sum())
    canary_rate = xc / nc if nc else None
    baseline_rate = xb / nb if nb else None
    ratio = canary_rate / baseline_rate if canary_rate is not None and baseline_rate else None
    analysed = float(arrays.seconds.sum())

    inflation = burst_inflation(arrays.canary_events, arrays.events, arrays.canary_share)
    log_e = log_directed_e_process(valid, settings.tolerance, settings.direction, settings.spread, inflation)
    log_e_max = float(np.max(log_e))
    e_value = math.exp(min(log_e_max, math.log(_MAX_REPORTED_E)))
    log_srm = log_srm_e_process(valid, settings.expected_canary_share, settings.srm_tolerance)
    srm_e = math.exp(min(float(np.max(log_srm)), math.log(_MAX_REPORTED_E)))
    srm = float(np.max(log_srm)) >= math.log(threshold)
    low, high = confidence_sequence(valid, threshold, inflation)

    figures = dict(
        name=name, windows=len(valid), analysed_seconds=analysed,
        canary_requests=nc, baseline_requests=nb, canary_events=xc, baseline_events=xb,
        canary_rate=canary_rate, baseline_rate=baseline_rate, ratio_estimate=ratio,
        ratio_low=low, ratio_high=high, e_value=e_value, threshold=threshold,
        sample_ratio_mismatch=srm, srm_e_value=srm_e,
    )
    ratio_text = "n/a (no events)" if xc + xb == 0 else _num(ratio)
    comparison = (
        f"canary {_pct(canary_rate)} vs baseline {_pct(baseline_rate)} {settings.event_noun}, "
        f"ratio {ratio_text} [{_num(low)}, {_num(high)}]"
    )
    if nc and nb and xc >= ALMOST_ALL * nc and xb >= ALMOST_ALL * nb:
        reason = (
            f"{ALMOST_ALL:.0%} or more of requests counted as events on both arms ({xc} of {nc} canary, "
            f"{xb} of {nb} baseline): check that the events query selects only bad requests"
        )
        return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)
    if log_e_max >= math.log(threshold):
        side = "" if settings.direction == "increase" else f" ({settings.direction})"
        reason = f"{comparison}, e-value {_num(e_value)} >= {_num(threshold)}{side}"
        return MetricVerdict(verdict="Fail", reason=reason, **figures)
    if srm:
        share = nc / (nc + nb) if nc + nb else 0.0
        reason = (
            f"sample ratio mismatch: canary got {share:.1%} of canary+baseline requests "
            f"({nc} vs {nb}), expected {settings.expected_canary_share:.0%}; "
            f"e-value {_num(srm_e)} >= {_num(threshold)}; check traffic routing"
        )
        return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)

    missing: list[str] = []
    if settings.direction != "decrease" and (high is None or high > settings.max_ratio):
        missing.append(f"upper bound {_num(high)} > maxRatio {_num(settings.max_ratio)}")
        if low > settings.max_ratio:  # shown worse than maxRatio, yet the spread keeps the evidence under threshold
            missing[-1] += (
                f"; the canary is shown above maxRatio, but spread {_num(settings.spread)} lets healthy pods differ "
                "so much that the evidence may never reach the threshold: lower spread or tolerance"
            )
    if settings.direction != "increase" and low < 1.0 / settings.max_ratio:
        missing.append(f"lower bound {_num(low)} < 1/maxRatio {_num(1.0 / settings.max_ratio)}")
    if xc + xb < settings.min_events:
        missing.append(f"{xc + xb} of {settings.min_events} events")
        if xc + xb == 0 and settings.pass_below_rate is None and settings.direction == "increase":
            missing[-1] += " (none on either arm: set passBelowRate to pass on the canary's own rate)"
    rare = ""
    if settings.pass_below_rate is not None and missing:
        rate_high = rate_upper_bound(xc, nc, threshold)
        if rate_high <= settings.pass_below_rate:
            missing, rare = [], f"canary {_pct(canary_rate)} {settings.event_noun}, at most {_pct(rate_high)}"
            rare += f" <= passBelowRate {_pct(settings.pass_below_rate)}"
        else:
            missing[-1] += f" (or a canary rate shown <= passBelowRate {_pct(settings.pass_below_rate)}: "
            missing[-1] += f"at most {_pct(rate_high)} so far)"
    if analysed < settings.min_duration_seconds:
        missing.append(f"{analysed:g}s of {settings.min_duration_seconds:g}s analysed")
    if len(valid) < MIN_WINDOWS_FOR_PASS:
        missing.append(f"{len(valid)} of {MIN_WINDOWS_FOR_PASS} windows")
    if not missing:
        bounds = {
            "increase": f"upper bound <= maxRatio {_num(settings.max_ratio)}",
            "decrease": f"lower bound >= 1/maxRatio {_num(1.0 / settings.max_ratio)}",
            "either": f"bounds within [1/maxRatio, maxRatio] for maxRatio {_num(settings.max_ratio)}",
        }[settings.direction]
        reason = (rare or f"{comparison}, {bounds}") + (f" ({note})" if note else "")
        return MetricVerdict(verdict="Pass", reason=reason, **figures)
    reason = f"{comparison}, e-value {_num(e_value)} < {_num(threshold)}; not yet: " + ", ".join(missing)
    if note:
        reason += f" ({note})"
    return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)


def _usable(windows: Sequence[CountWindow]) -> tuple[list[CountWindow], str]:
    """The windows the judge can use, in order, and a note on the ones it ignored and why."""
    kept: list[CountWindow] = []
    causes: dict[str, int] = {}
    for window in sorted(windows, key=_start_or_inf):
        cause = _problem(window)
        if cause is None and kept and window.start < kept[-1].end:
            cause = "overlapping an earlier window"
        if cause is None:
            kept.append(window)
        else:
            causes[cause] = causes.get(cause, 0) + 1
    ignored = sum(causes.values())
    listed = ", ".join(f"{n} {cause}" for cause, n in causes.items())
    note = f"{ignored} window{'s' if ignored != 1 else ''} ignored: {listed}" if ignored else ""
    return kept, note


def _start_or_inf(window: CountWindow) -> float:
    start = window.start
    return float(start) if isinstance(start, numbers.Real) and math.isfinite(start) else math.inf


def _problem(window: CountWindow) -> str | None:
    counts = (window.canary_requests, window.baseline_requests, window.canary_events, window.baseline_events)
    if not all(_whole(c) and 0 <= c <= MAX_COUNT for c in counts):
        return f"with counts that are not whole numbers in [0, {MAX_COUNT:.0e}]"
    if window.canary_events > window.canary_requests or window.baseline_events > window.baseline_requests:
        return "with more events than requests"
    if not (math.isfinite(window.start) and math.isfinite(window.end) and window.end > window.start):
        return "with a bad time range"
    if window.canary_requests + window.baseline_requests == 0:
        return "without traffic"
    return None


def _whole(count: object) -> bool:
    if isinstance(count, numbers.Integral):
        return True
    return isinstance(count, float) and count.is_integer()


def _arrays(windows: Sequence[CountWindow]) -> _Arrays:
    def column(attribute: str) -> FloatArray:
        return np.array([float(getattr(w, attribute)) for w in windows], dtype=np.float64)

    return _Arrays(
        canary_requests=column("canary_requests"),
        baseline_requests=column("baseline_requests"),
        canary_events=column("canary_events"),
        baseline_events=column("baseline_events"),
        seconds=np.array([w.end - w.start for w in windows], dtype=np.float64),
    )


def _final_loglik(
    canary_events: FloatArray,
    total_events: FloatArray,
    canary_share: FloatArray,
    log_ratios: FloatArray,
    inflation: FloatArray,
) -> FloatArray:
    per_window = window_log_likelihoods(canary_events, total_events, canary_share, log_ratios)
    result: FloatArray = (per_window / inflation[:, None]).sum(axis=0)
    return result


def _pct(rate: float | None) -> str:
    if rate is None:
        return "n/a"
    percent = rate * 100
    return f"{percent:.1f}%" if percent >= 10 else f"{percent:.2g}%"


def _num(value: float | None) -> str:
    if value is None:
        return "inf"
    return f"{value:.3g}" if abs(value) < 1e6 else f"{value:.2e}"
