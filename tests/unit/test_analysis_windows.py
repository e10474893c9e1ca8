"""How Prometheus range results become count windows, and how unusable values are accounted for."""

from __future__ import annotations

import math

from siskin.analysis.windows import build_windows, window_ends

ENDS = window_ends(110.0, 10.0, 4)


def track(values: list[float]) -> list[tuple[float, float]]:
    return list(zip(ENDS, values, strict=False))


def test_window_ends_step_from_the_first_end() -> None:
    assert ENDS == [110.0, 120.0, 130.0, 140.0]


def test_counts_are_rounded_and_aligned() -> None:
    requests = {"canary": track([99.6, 100.4, 10, 10]), "baseline": track([101.2, 99.5, 10, 10]), "stable": []}
    events = {"canary": track([2.49, 3.5, 0, 1]), "baseline": track([0.2, 1, 0, 0])}
    result = build_windows(ENDS, 10.0, requests, events=events)
    first = result.windows[0]
    assert (first.start, first.end) == (100.0, 110.0)
    assert (first.canary_requests, first.baseline_requests, first.canary_events, first.baseline_events) == (
        100, 101, 2, 0,
    )
    assert result.usable == 4 and result.skipped == {}


def test_missing_event_series_means_zero_events() -> None:
    requests = {"canary": track([100] * 4), "baseline": track([100] * 4)}
    result = build_windows(ENDS, 10.0, requests, events={})
    assert result.usable == 4
    assert all(w.canary_events == 0 and w.baseline_events == 0 for w in result.windows)


def test_unusable_windows_are_skipped_with_reasons() -> None:
    requests = {
        "canary": track([math.nan, 100, 100, 0]),
        "baseline": track([100, math.inf, -5, 0]),
    }
    result = build_windows(ENDS, 10.0, requests, events={})
    assert result.usable == 0
    assert result.skipped == {"not a number": 2, "negative count": 1, "no traffic": 1}
    assert result.summary() == (
        "0 of 4 windows usable; skipped: negative count (1), no traffic (1), not a number (2)"
    )


def test_missing_track_sample_skips_the_window() -> None:
    requests = {"canary": track([100, 100, 100, 100]), "baseline": track([100, 100, 100])}
    result = build_windows(ENDS, 10.0, requests, events={})
    assert result.usable == 3
    assert result.skipped == {"no baseline requests sample": 1}


def test_events_above_requests_are_clipped_and_counted() -> None:
    requests = {"canary": track([10] * 4), "baseline": track([10] * 4)}
    events = {"canary": track([12, 1, 1, 1]), "baseline": track([1] * 4)}
    result = build_windows(ENDS, 10.0, requests, events=events)
    assert result.windows[0].canary_events == 10
    assert result.clipped == 1
    assert "1 with events clipped to requests" in result.summary()


def test_latency_events_are_requests_minus_fast_requests() -> None:
    requests = {"canary": track([100] * 4), "baseline": track([100] * 4)}
    fast = {"canary": track([90, 101, 90, math.nan]), "baseline": track([99, 99, 99, 99])}
    result = build_windows(ENDS, 10.0, requests, fast=fast)
    assert [w.canary_events for w in result.windows] == [10, 0, 10]
    assert result.skipped == {"not a number": 1}
