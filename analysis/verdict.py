"""The per-metric result of one look, as users and the Rollout status see it.

It is a pydantic model with camelCase aliases because it is stored verbatim in
the Rollout's status and shown by the dashboard and CLI; every float is finite
or ``None`` so the JSON is valid for the Kubernetes API.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]


class MetricVerdict(BaseModel):
    """What one metric showed at one look, with the figures behind it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    verdict: Verdict
    reason: str
    windows: int = 0
    analysed_seconds: float = 0.0
    canary_requests: int = 0
    baseline_requests: int = 0
    canary_events: int = 0
    baseline_events: int = 0
    canary_rate: float | None = None
    baseline_rate: float | None = None
    ratio_estimate: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    """``None`` when the data cannot bound the ratio from above (e.g. no baseline events)."""
    e_value: float | None = None
    """The largest fail e-value seen so far (the statistic compared with ``threshold``)."""
    threshold: float | None = None
    sample_ratio_mismatch: bool = False
    srm_e_value: float | None = None
    p_value: float | None = None
    """Mann-Whitney judge: two-sided p-value of the rank-sum test (reported only, as in Kayenta)."""
    hl_estimate: float | None = None
    """Mann-Whitney judge: Hodges-Lehmann shift of the per-window rates, canary - baseline."""
    classification: str | None = None
    """Mann-Whitney judge: Kayenta's label (Pass, High, Low, NoData, NodataFailMetric)."""

    @field_validator(
        "canary_rate", "baseline_rate", "ratio_estimate", "ratio_low", "ratio_high", "e_value",
        "threshold", "srm_e_value", "p_value", "hl_estimate",
    )
    @classmethod
    def _finite_or_none(cls, value: float | None) -> float | None:
        if value is None or math.isnan(value):
            return None
        if math.isinf(value):
            return None if value > 0 else 0.0
        return value

    @classmethod
    def error(cls, name: str, message: str) -> MetricVerdict:
        """An Error verdict: the metric could not be measured (query failed, template problem)."""
        return cls(name=name, verdict="Error", reason=message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys, as stored in the Rollout status."""
        return self.model_dump(mode="json", by_alias=True)
