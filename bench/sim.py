"""What Prometheus would return for a canary, its fresh baseline and stable, per scrape window.

One run is ``HORIZON_S / WINDOW_S`` non-overlapping windows of ``increase()``
values per track: requests, 5xx errors and latency-histogram bucket counts.

- Arrivals: Poisson at ``rps`` times a shared load curve (a slow diurnal sine
  with a random phase times a small per-window lognormal wobble), split by
  weight: canary ``w``, baseline ``w`` (same size and weight), stable the rest.
- Pods: ``PODS_PER_TRACK`` per track share their track's traffic equally. Each
  pod has a persistent gamma frailty (pod heterogeneity) and a fresh gamma
  frailty every window (bursts) on its error probability, and likewise on its
  latency (as a scale factor ``g ** LATENCY_ELASTICITY``, which moves the
  p99 exceedance by about ``g``).
- Warm-up: canary and baseline pods are both fresh; for ``WARMUP_S`` their
  error probability and latency scale carry a linearly fading penalty.
- Errors ~ Binomial(requests, p); latency ~ lognormal(sigma 0.5), optionally
  mixed with a slow tail, counted into Prometheus buckets; the slow-request
  count is requests above the bucket boundary nearest the stable p99.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WINDOW_S = 10.0
HORIZON_S = 1800.0
WINDOWS = int(HORIZON_S / WINDOW_S)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PODS_PER_TRACK = 3
LATENCY_SIGMA = 0.5
LATENCY_MEDIAN_S = 0.08
BASE_ERROR = 0.01
FRAILTY_CV_POD = 0.1
FRAILTY_CV_WINDOW = 0.5
LATENCY_ELASTICITY = 1 / 5.33
DIURNAL_AMPLITUDE = 0.3
LOAD_WOBBLE_SD = 0.05
WARMUP_S = 120.0
WARMUP_ERROR_PENALTY = 1.0
WARMUP_LATENCY_PENALTY = 0.3
TAIL_MEDIAN_S = 1.0
STEPS = ((0.0, 0.05), (300.0, 0.10), (600.0, 0.25))
"""Stepped canary weight: (from second, weight)."""


def stable_p99() -> float:
    """The stable version's p99 latency (seconds)."""
    return LATENCY_MEDIAN_S * math.exp(ndtri(0.99) * LATENCY_SIGMA)


SLOW_BOUNDARY_S = min(BUCKETS, key=lambda b: abs(math.log(b / stable_p99())))
"""The bucket boundary nearest the stable p99: requests above it are the 'slow' events."""


@dataclass(frozen=True)
class Scenario:
    """How the canary differs from the baseline."""

    name: str
    canary_error: float = BASE_ERROR
    latency_scale: float = 1.0
    tail_share: float = 0.0

    @property
    def is_aa(self) -> bool:
        """True when canary and baseline are the same version."""
        return self.canary_error == BASE_ERROR and self.latency_scale == 1.0 and self.tail_share == 0.0

    def true_ratios(self) -> dict[str, float]:
        """Canary/baseline ratio of per-request event probabilities, per metric, after warm-up."""
        base_slow = _exceedance(1.0, 0.0)
        return {
            "errors": self.canary_error / BASE_ERROR,
            "slow": _exceedance(self.latency_scale, self.tail_share) / base_slow,
        }

    def ratio_paths(self) -> dict[str, FloatArray]:
        """The same ratios per window: warm-up slows both tracks' body, which dilutes a latency regression."""
        warm_scale = 1 + WARMUP_LATENCY_PENALTY * warm_up_fade()
        slow = np.array([
            _exceedance(self.latency_scale * w, self.tail_share) / _exceedance(w, 0.0) for w in warm_scale
        ])
        return {"errors": np.full(WINDOWS, self.canary_error / BASE_ERROR), "slow": slow}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("A/A"),
        Scenario("errors 1%→2%", canary_error=0.02),
        Scenario("errors 1%→10%", canary_error=0.10),
        Scenario("p99 latency +20%", latency_scale=1.2),
        Scenario("tail-only latency (1% slow mixture)", tail_share=0.01),
    )
}
METRICS = ("errors", "slow")


@dataclass(frozen=True)
class Traffic:
    """Total request rate and the canary weight (a fixed share, or ``None`` for the 5→10→25% steps)."""

    rps: float
    weight: float | None

    @property
    def label(self) -> str:
        """E.g. ``100 rps, 10%`` or ``100 rps, 5→10→25%``."""
        weight = "5→10→25%" if self.weight is None else f"{self.weight:.0%}"
        return f"{self.rps:g} rps, {weight}"

    def weights(self) -> FloatArray:
        """Canary (= baseline) weight per window."""
        if self.weight is not None:
            return np.full(WINDOWS, self.weight)
        starts = np.arange(WINDOWS) * WINDOW_S
        result = np.zeros(WINDOWS)
        for begin, weight in STEPS:
            result[starts >= begin] = weight
        return result


@dataclass
class Stream:
    """One simulated run: per-window counts per track and metric."""

    canary_requests: IntArray
    baseline_requests: IntArray
    stable_requests: IntArray
    canary_events: dict[str, IntArray] = field(default_factory=dict)
    baseline_events: dict[str, IntArray] = field(default_factory=dict)
    canary_buckets: IntArray | None = None
    """Cumulative bucket counts (windows x buckets), as ``increase(..._bucket)`` returns them."""
    baseline_buckets: IntArray | None = None

    @property
    def windows(self) -> int:
        """Number of windows."""
        return int(self.canary_requests.size)


def warm_up_fade() -> FloatArray:
    """Per window, the share of the warm-up penalty fresh pods still carry (1 -> 0 over ``WARMUP_S``)."""
    starts = np.arange(WINDOWS) * WINDOW_S
    result: FloatArray = np.clip(1 - (starts + WINDOW_S / 2) / WARMUP_S, 0.0, 1.0)
    return result


def _exceedance(scale: float, tail_share: float, boundary: float = SLOW_BOUNDARY_S) -> float:
    body = ndtr((math.log(LATENCY_MEDIAN_S * scale) - math.log(boundary)) / LATENCY_SIGMA)
    tail = ndtr((math.log(TAIL_MEDIAN_S) - math.log(boundary)) / LATENCY_SIGMA)
    return float((1 - tail_share) * body + tail_share * tail)


def _gamma(rng: np.random.Generator, cv: float, shape: tuple[int, ...]) -> FloatArray:
    if cv <= 0:
        return np.ones(shape)
    k = 1.0 / cv**2
    result: FloatArray = rng.gamma(k, 1.0 / k, size=shape)
    return result


def _bucket_probabilities(scale: FloatArray, tail_share: float) -> FloatArray:
    """P(latency <= each boundary) for latency scales of shape (...,) -> (..., buckets)."""
    log_b = np.log(np.array(BUCKETS))
    body = ndtr((log_b - np.log(LATENCY_MEDIAN_S * scale)[..., None]) / LATENCY_SIGMA)
    tail = ndtr((log_b - math.log(TAIL_MEDIAN_S)) / LATENCY_SIGMA)
    result: FloatArray = (1 - tail_share) * body + tail_share * tail
    return result


def _track(
    rng: np.random.Generator,
    expected: FloatArray,
    error: float,
    latency_scale: float,
    tail_share: float,
    warm: FloatArray,
) -> tuple[IntArray, IntArray, IntArray]:
    """Requests, errors and cumulative bucket counts per window for one fresh track of pods."""
    windows, pods = expected.size, PODS_PER_TRACK
    per_pod = rng.poisson(np.repeat(expected[:, None] / pods, pods, axis=1))
    err_frailty = _gamma(rng, FRAILTY_CV_POD, (1, pods)) * _gamma(rng, FRAILTY_CV_WINDOW, (windows, pods))
    p_err = np.clip(error * err_frailty * (1 + WARMUP_ERROR_PENALTY * warm)[:, None], 0.0, 1.0)
    errors = rng.binomial(per_pod, p_err).sum(axis=1)
    lat_frailty = _gamma(rng, FRAILTY_CV_POD, (1, pods)) * _gamma(rng, FRAILTY_CV_WINDOW, (windows, pods))
    scale = latency_scale * lat_frailty**LATENCY_ELASTICITY * (1 + WARMUP_LATENCY_PENALTY * warm)[:, None]
    cdf = _bucket_probabilities(scale, tail_share)
    cells = np.diff(np.concatenate([np.zeros((windows, pods, 1)), cdf, np.ones((windows, pods, 1))], axis=2), axis=2)
    cells = np.clip(cells, 0.0, None)
    cells /= cells.sum(axis=2, keepdims=True)
    counts = rng.multinomial(per_pod, cells).sum(axis=1)  # (windows, buckets + 1), last = +Inf overflow
    cumulative = np.cumsum(counts[:, :-1], axis=1)
    return per_pod.sum(axis=1), errors, cumulative


def simulate(traffic: Traffic, scenario: Scenario, rng: np.random.Generator) -> Stream:
    """One run of ``WINDOWS`` windows."""
    starts = np.arange(WINDOWS) * WINDOW_S
    phase = rng.uniform(0.0, 2 * math.pi)
    load = 1 + DIURNAL_AMPLITUDE * np.sin(phase + 2 * math.pi * starts / 86400.0)
    load = load * np.exp(rng.normal(0.0, LOAD_WOBBLE_SD, WINDOWS))
    weights = traffic.weights()
    expected = traffic.rps * WINDOW_S * load * weights
    warm = warm_up_fade()
    nc, xc, bc = _track(rng, expected, scenario.canary_error, scenario.latency_scale, scenario.tail_share, warm)
    nb, xb, bb = _track(rng, expected, BASE_ERROR, 1.0, 0.0, warm)
    stable = rng.poisson(traffic.rps * WINDOW_S * load * (1 - 2 * weights))
    slow_index = BUCKETS.index(SLOW_BOUNDARY_S)
    return Stream(
        canary_requests=nc,
        baseline_requests=nb,
        stable_requests=stable,
        canary_events={"errors": xc, "slow": nc - bc[:, slow_index]},
        baseline_events={"errors": xb, "slow": nb - bb[:, slow_index]},
        canary_buckets=bc,
        baseline_buckets=bb,
    )
