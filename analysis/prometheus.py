"""Prometheus as a :class:`~siskin.analysis.provider.MetricsProvider`.

One HTTP range query per query string (through ``prometheus-api-client``), with
the answer checked and reshaped into ``{track: [(ts, value), ...]}``. Every way
the call can go wrong becomes a :class:`ProviderError` carrying Prometheus' own
message, so that a user reading the analysis status sees the real cause.
"""

from __future__ import annotations

import ast
import json
import math
import re
from datetime import UTC, datetime
from typing import Any, cast

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from .provider import ProviderUnreachable, QueryError, TrackSeries
from .template import AnalysisTemplateSpec, parse_duration

TRACK_LABEL = "track"
_STATUS_RE = re.compile(r"HTTP Status Code (\d+) \((b?['\"].*['\"])\)\s*$", re.DOTALL)


class PrometheusProvider:
    """Range queries against one Prometheus server."""

    def __init__(
        self,
        address: str,
        *,
        timeout_seconds: float = 10.0,
        headers: dict[str, str] | None = None,
        retries: int = 1,
    ) -> None:
        """Connect lazily to ``address``; ``retries`` applies to refused connections and 502/503/504."""
        self.address = address.rstrip("/")
        self.timeout_seconds = timeout_seconds
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=[502, 503, 504],
            raise_on_status=False,
        )
        self._client = PrometheusConnect(url=self.address, headers=dict(headers or {}), retry=retry)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        """Evaluate ``query`` over ``[start, end]`` every ``step_seconds``; one series per ``track``."""
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        if step_seconds <= 0:
            raise ValueError(f"step must be positive, got {step_seconds}")
        try:
            result = self._client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=_format_step(step_seconds),
                timeout=cast(int, self.timeout_seconds),  # requests takes float seconds
            )
        except PrometheusApiClientException as exc:
            raise QueryError(f"Prometheus at {self.address} rejected the query: {_api_error(exc)}") from exc
        except requests.Timeout as exc:
            raise ProviderUnreachable(
                f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            ) from exc
        except requests.RequestException as exc:
            cause = _root_cause(exc)
            raise ProviderUnreachable(f"cannot reach Prometheus at {self.address}: {cause}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise QueryError(
                f"Prometheus at {self.address} sent a response that is not API JSON: {exc}"
            ) from exc
        return parse_matrix(result)


def provider_for(template: AnalysisTemplateSpec, default_address: str) -> PrometheusProvider:
    """The provider a template asks for: its own address and timeout, else the operator's default URL."""
    settings = template.provider.prometheus
    return PrometheusProvider(
        settings.address or default_address, timeout_seconds=parse_duration(settings.timeout)
    )


def parse_matrix(result: Any) -> TrackSeries:
    """Check a ``query_range`` ``data.result`` and index it by the ``track`` label.

    Values are parsed with ``float`` so ``"NaN"``, ``"+Inf"`` and ``"-Inf"`` come
    through as floats; anything else unreadable raises :class:`QueryError`.
    """
    if not isinstance(result, list):
        raise QueryError(f"expected a range (matrix) result, got {type(result).__name__}")
    by_track: TrackSeries = {}
    for series in result:
        if not isinstance(series, dict) or "values" not in series:
            raise QueryError("expected a range (matrix) result; is this an instant-vector or scalar query?")
        labels = series.get("metric") or {}
        track = labels.get(TRACK_LABEL)
        if track is None:
            raise QueryError(
                f"a result series has no '{TRACK_LABEL}' label ({_labels_text(labels)}); "
                f"aggregate the query with 'sum by ({TRACK_LABEL}) (...)'"
            )
        if track in by_track:
            raise QueryError(
                f"several series for {TRACK_LABEL}={track!r}; aggregate with 'sum by ({TRACK_LABEL}) (...)' "
                "so each track has one series"
            )
        points: list[tuple[float, float]] = []
        for pair in series["values"]:
            try:
                timestamp, text = pair
                value = float(text)
                points.append((float(timestamp), value))
            except (TypeError, ValueError) as exc:
                raise QueryError(f"unreadable sample {pair!r} for {TRACK_LABEL}={track!r}") from exc
        by_track[track] = points
    return by_track


def _format_step(step_seconds: float) -> str:
    return f"{step_seconds:g}" if math.isfinite(step_seconds) else "1"


def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _api_error(exc: PrometheusApiClientException) -> str:
    """Prometheus' ``errorType: error`` from the client's exception text, or that text itself."""
    text = str(exc)
    match = _STATUS_RE.match(text)
    if match is None:
        return text
    status, raw = match.groups()
    try:
        body = ast.literal_eval(raw)
        payload = json.loads(body.decode() if isinstance(body, bytes) else body)
    except (ValueError, SyntaxError, UnicodeDecodeError):
        return f"HTTP {status}: {raw[:300]}"
    if isinstance(payload, dict) and "error" in payload:
        return f"{payload.get('errorType', 'error')}: {payload['error']} (HTTP {status})"
    return f"HTTP {status}: {raw[:300]}"


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error chain, e.g. 'Connection refused'."""
    text = str(exc)
    refused = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if refused:
        return refused.group(1).strip()
    return text[:300]
