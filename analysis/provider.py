"""The one interface the judge needs from a metrics backend, and its errors.

Keeping it this small lets the analysis run against Prometheus in production,
a fake in unit tests, and anything else later, without the judge knowing.
"""

from __future__ import annotations

from typing import Protocol

TrackSeries = dict[str, list[tuple[float, float]]]
"""Values per track label: ``{"canary": [(unix_ts, value), ...], "baseline": [...]}``."""


class ProviderError(Exception):
    """A query could not be answered; the message says why, in the backend's own words where possible."""


class ProviderUnreachable(ProviderError):
    """The backend did not answer (connection refused, DNS, timeout, TLS)."""


class QueryError(ProviderError):
    """The backend answered with an error, or with something that is not a per-track range result."""


class MetricsProvider(Protocol):
    """A source of range query results split by the ``track`` label."""

    def range_by_track(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> TrackSeries:
        """Evaluate ``query`` at ``start``, ``start + step``, ... ``<= end``; one series per track.

        Values are returned as the backend gives them (NaN and infinities included);
        interpreting them is the job of :mod:`siskin.analysis.windows`. Raises
        :class:`ProviderError` rather than ever returning a result it could not read.
        """
        ...

CANARY_AND_BASELINE = ("canary", "baseline")
"""The two tracks the judge compares (``stable`` exists too but is not part of the comparison)."""
