"""Judge-quality benchmark: Siskin's sequential judge against an oracle SPRT, Kayenta and a threshold rule.

Usage: ``.venv/bin/python bench/judge_quality.py [--quick] [--seed N] [--workers 2]``

Phase 1 simulates A/A runs (false rollbacks; calibrates Kayenta's confidence to
Siskin's A/A rate), phase 2 the regression scenarios. The last line printed
is one JSON object; full mode also writes ``bench/results/judge.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from judges import (
    ALPHA,
    KAYENTA_CONFIDENCE,
    KAYENTA_MIN_WINDOWS,
    NEVER,
    SISKIN_VARIANTS,
    SPRT_AA_RATIO,
    KayentaClassifier,
    KayentaPath,
    confidence_for_z,
    kayenta_deployed,
    kayenta_fixed,
    oracle_sprt,
    screen_check,
    siskin,
    threshold,
)
from report import JUDGES, Detection, Rate
from sim import METRICS, SCENARIOS, Traffic, simulate

HEADLINE_TRAFFIC = Traffic(100, 0.10)
HEADLINE_SCENARIO = "errors 1%→2%"
RATES = (50, 100, 200)
WEIGHTS: tuple[float | None, ...] = (0.05, 0.10, 0.20, None)
FULL_GRID = [Traffic(r, w) for r in RATES for w in WEIGHTS]
QUICK_GRID = [HEADLINE_TRAFFIC, Traffic(50, 0.05), Traffic(200, None)]
SCENARIO_IDS = {name: i for i, name in enumerate(SCENARIOS)}
TRAFFIC_IDS = {(t.rps, t.weight): i for i, t in enumerate(FULL_GRID)}


def load_kayenta() -> KayentaClassifier:
    """The product's Kayenta-compatible classifier and scorer."""
    from siskin.analysis import mannwhitney

    return KayentaClassifier(mannwhitney.classify, mannwhitney.score, "siskin.analysis.mannwhitney")


@dataclass(frozen=True)
class Task:
    """A chunk of runs of one cell."""

    traffic: Traffic
    scenario: str
    seed: int
    start: int
    count: int
    z_calibrated: float | None = None
    first_look: int = KAYENTA_MIN_WINDOWS - 1
    check_screen: bool = False


def rng_for(task: Task, run: int) -> np.random.Generator:
    """Per-run generator: the same run gets the same stream whatever the chunking or worker count."""
    cell = [TRAFFIC_IDS[(task.traffic.rps, task.traffic.weight)], SCENARIO_IDS[task.scenario]]
    return np.random.default_rng(np.random.SeedSequence([task.seed, *cell, run]))


_KAYENTA: KayentaClassifier | None = None


def run_task(task: Task) -> dict[str, Any]:
    """Simulate and judge every run of ``task``: first-fail window per judge (NEVER = -1)."""
    global _KAYENTA
    if _KAYENTA is None:
        _KAYENTA = load_kayenta()
    scenario = SCENARIOS[task.scenario]
    ratios: dict[str, float | np.ndarray] = (
        {m: SPRT_AA_RATIO for m in METRICS} if scenario.is_aa else dict(scenario.ratio_paths())
    )
    out: dict[str, list[int]] = defaultdict(list)
    paths: list[np.ndarray] = []
    screen = [0, 0]
    for run in range(task.start, task.start + task.count):
        stream = simulate(task.traffic, scenario, rng_for(task, run))
        path = KayentaPath(stream)
        out["siskin"].append(siskin(stream))
        for variant, settings in SISKIN_VARIANTS.items():
            out[variant].append(siskin(stream, settings))
        out["oracle_sprt"].append(oracle_sprt(stream, ratios))
        out["threshold"].append(threshold(stream))
        out["kayenta_deployed"].append(kayenta_deployed(_KAYENTA, stream, path))
        out["kayenta_fixed"].append(kayenta_fixed(_KAYENTA, stream))
        if task.z_calibrated is None:
            paths.append(path.path())
        else:
            out["kayenta_calibrated"].append(path.first_over(task.z_calibrated, task.first_look))
        if task.check_screen and run == task.start == 0:
            disagree, looks = screen_check(_KAYENTA, stream, path, KAYENTA_CONFIDENCE)
            screen[0] += disagree
            screen[1] += looks
    return {"task": task, "fails": dict(out), "paths": paths, "screen": screen}


def chunks(grid: list[Traffic], scenarios: list[str], runs: int, seed: int, size: int, **extra: Any) -> Iterator[Task]:
    """Tasks of at most ``size`` runs per cell."""
    for traffic in grid:
        for scenario in scenarios:
            for start in range(0, runs, size):
                yield Task(traffic, scenario, seed, start, min(size, runs - start), **extra)


def run_all(tasks: list[Task], workers: int) -> list[dict[str, Any]]:
    """Run tasks in a process pool (order of results = order of tasks)."""
    if workers <= 1:
        return [run_task(t) for t in tasks]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(run_task, tasks, chunksize=1)


@dataclass(frozen=True)
class Calibration:
    """Kayenta's confidence (as its CI quantile) and first judged window for a target A/A rate."""

    z: float
    first_look: int
    rate: float
    floors: dict[int, float]
    """Per first judged window: the A/A rate no confidence can go below (looks High at any confidence)."""

    @property
    def confidence(self) -> float:
        """The calibrated confidence."""
        return confidence_for_z(self.z)


CALIBRATION_FIRST_LOOKS = (KAYENTA_MIN_WINDOWS - 1, 5, 11, 29, 59)
"""Windows 3, 6, 12, 30 and 60: later first judgments are tried only if no confidence reaches the target."""


def calibrate(paths: np.ndarray, target_rate: float) -> Calibration:
    """Highest statistic threshold at which Kayenta's A/A rate is <= ``target_rate`` (fails iff path > z).

    Starts at the product's first judged window; if even confidence -> 1 cannot
    get down to the target there (small samples are High at any confidence when
    every canary value exceeds every baseline value), judges from a later window.
    """
    floors: dict[int, float] = {}
    runs = paths.shape[0]
    allowed = math.floor(target_rate * runs + 1e-9)
    for first_look in CALIBRATION_FIRST_LOOKS:
        worst = np.max(paths[:, first_look:], axis=1) if runs else np.zeros(0)
        floors[first_look] = float(np.mean(np.isposinf(worst))) if runs else 0.0
        finite = np.sort(worst[~np.isposinf(worst)])[::-1]
        always = runs - finite.size
        if always > allowed:
            continue
        rest = allowed - always
        z = float(finite[rest]) if rest < finite.size else -math.inf
        rate = float(np.mean(worst > z)) if runs else 0.0
        return Calibration(z, first_look, rate, floors)
    last = CALIBRATION_FIRST_LOOKS[-1]
    return Calibration(math.inf, last, floors[last], floors)


@dataclass
class Outcome:
    """Everything one benchmark run measured."""

    rates: dict[str, Rate]
    aa_by_traffic: dict[str, dict[str, list[int]]]
    detections: dict[tuple[str, str], dict[str, Detection]]
    calibration: Calibration
    targets: dict[str, Any]
    screen: tuple[int, int]
    summary: dict[str, Any]


def benchmark(
    grid: list[Traffic], cells: list[tuple[Traffic, str]], aa_runs: int, runs: int, seed: int, workers: int,
    chunk: int = 25,
) -> Outcome:
    """A/A runs on every traffic setting of ``grid``, then ``runs`` runs of every (traffic, scenario) cell."""
    began = time.monotonic()
    aa_tasks = list(chunks(grid, ["A/A"], aa_runs, seed, chunk, check_screen=True))
    aa_results = run_all(aa_tasks, workers)
    print(f"A/A phase: {len(aa_tasks)} tasks in {time.monotonic() - began:.1f} s", file=sys.stderr)
    aa = _collect(aa_results)
    siskin_rate = Rate(sum(i != NEVER for i in aa["siskin"]), len(aa["siskin"]))
    paths = np.array([p for r in aa_results for p in r["paths"]])
    calibration = calibrate(paths, siskin_rate.rate)
    aa["kayenta_calibrated"] = [first_over(p, calibration) for p in paths]
    aa_by_traffic: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for result in aa_results:
        for judge, fails in result["fails"].items():
            aa_by_traffic[result["task"].traffic.label][judge].extend(fails)

    ab_tasks = [
        t for traffic, name in cells
        for t in chunks(
            [traffic], [name], runs, seed, chunk, z_calibrated=calibration.z, first_look=calibration.first_look,
            check_screen=True,
        )
    ]
    ab_results = run_all(ab_tasks, workers)
    print(f"regression phase: {len(ab_tasks)} tasks, {time.monotonic() - began:.1f} s so far", file=sys.stderr)
    by_cell: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for result in ab_results:
        task = result["task"]
        for judge, fails in result["fails"].items():
            by_cell[(task.traffic.label, task.scenario)][judge].extend(fails)
    disagree, compared = np.sum([r["screen"] for r in aa_results + ab_results], axis=0)

    rates = {judge: Rate(sum(i != NEVER for i in aa[judge]), len(aa[judge])) for judge in JUDGES}
    detections = {cell: {judge: Detection.of(fails[judge]) for judge in JUDGES} for cell, fails in by_cell.items()}
    targets = _targets(rates["siskin"], detections)
    summary = _json(rates, detections, calibration, targets, aa_runs=len(aa["siskin"]))
    return Outcome(
        rates, {k: dict(v) for k, v in aa_by_traffic.items()}, detections, calibration, targets,
        (int(disagree), int(compared)), summary,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print PASS/MISS lines and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a representative subset in under a minute")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--aa-runs", type=int, default=None, help="A/A runs per traffic setting")
    parser.add_argument("--runs", type=int, default=None, help="runs per regression cell")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "judge.md")
    args = parser.parse_args(argv)
    began = time.monotonic()

    grid = QUICK_GRID if args.quick else FULL_GRID
    aa_runs = args.aa_runs or (300 if args.quick else 500)
    runs = args.runs or (80 if args.quick else 300)
    regressions = [name for name in SCENARIOS if not SCENARIOS[name].is_aa]
    if args.quick:
        cells = [(HEADLINE_TRAFFIC, name) for name in regressions] + [
            (t, HEADLINE_SCENARIO) for t in grid if t != HEADLINE_TRAFFIC
        ]
    else:
        cells = [(t, name) for t in grid for name in regressions]
    outcome = benchmark(grid, cells, aa_runs, runs, args.seed, args.workers)
    elapsed = time.monotonic() - began
    lines = _target_lines(outcome.targets)
    for line in lines:
        print(line)
    if not args.quick:
        import markdown_report

        text = markdown_report.render(
            rates=outcome.rates, aa_by_traffic=outcome.aa_by_traffic, detections=outcome.detections,
            calibration=outcome.calibration, targets=outcome.targets, target_lines=lines,
            command=" ".join(["bench/judge_quality.py", *(argv if argv is not None else sys.argv[1:])]),
            seed=args.seed, aa_runs=aa_runs, runs=runs, grid=grid, elapsed=elapsed, workers=args.workers,
            kayenta_source=load_kayenta().source, screen=outcome.screen, summary=outcome.summary,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out} in {elapsed:.0f} s")
    print(json.dumps(outcome.summary, ensure_ascii=False))
    return 0


def first_over(path: np.ndarray, calibration: Calibration) -> int:
    """First look at which calibrated Kayenta fails on a stored A/A path."""
    hits = np.flatnonzero(path[calibration.first_look :] > calibration.z)
    return int(hits[0]) + calibration.first_look if hits.size else NEVER


def _collect(results: list[dict[str, Any]]) -> dict[str, list[int]]:
    merged: dict[str, list[int]] = defaultdict(list)
    for result in results:
        for judge, fails in result["fails"].items():
            merged[judge].extend(fails)
    return merged


def _targets(siskin_rate: Rate, detections: dict[tuple[str, str], dict[str, Detection]]) -> dict[str, Any]:
    from report import not_later, ttd_target

    headline = detections.get((HEADLINE_TRAFFIC.label, HEADLINE_SCENARIO), {}).get("siskin")
    slow_vs_oracle = [
        f"{t} / {s}" for (t, s), d in detections.items() if not ttd_target(d["siskin"], d["oracle_sprt"])
    ]
    later_than_kayenta = [
        f"{t} / {s}" for (t, s), d in detections.items() if not not_later(d["siskin"], d["kayenta_calibrated"])
    ]
    return {
        "aa_upper95_le_alpha": siskin_rate.interval[1] <= ALPHA,
        "ttd_within_1_5x_oracle": not slow_vs_oracle,
        "cells": len(detections),
        "ttd_within_1_5x_oracle_misses": slow_vs_oracle,
        "ttd_not_later_than_kayenta_calibrated": not later_than_kayenta,
        "ttd_not_later_than_kayenta_calibrated_misses": later_than_kayenta,
        "power15_headline_ge_80": headline is not None and headline.power_15 >= 0.8,
        "power15_headline": None if headline is None else headline.power_15,
        "siskin_aa": siskin_rate,
    }


def _misses(cells: list[str], total: int) -> str:
    return f"; missed in {len(cells)} of {total} cells: {'; '.join(cells)}" if cells else ""


def _target_lines(targets: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rate: Rate = targets["siskin_aa"]
    low, high = rate.interval
    lines = [
        f"{mark(targets['aa_upper95_le_alpha'])} Siskin A/A false-rollback rate {rate.rate:.2%} "
        f"[95% CI {low:.2%}, {high:.2%}] upper <= alpha {ALPHA:.0%}",
        f"{mark(targets['ttd_within_1_5x_oracle'])} Siskin median TTD <= 1.5x oracle SPRT (or +1 window when the "
        f"oracle detects within 3 windows) in every regression cell"
        + _misses(targets["ttd_within_1_5x_oracle_misses"], targets["cells"]),
        f"{mark(targets['ttd_not_later_than_kayenta_calibrated'])} Siskin median TTD no later than calibrated Kayenta "
        "in every regression cell"
        + _misses(targets["ttd_not_later_than_kayenta_calibrated_misses"], targets["cells"]),
    ]
    power = targets["power15_headline"]
    lines.append(
        f"{mark(targets['power15_headline_ge_80'])} Siskin power within 15 min >= 80% for {HEADLINE_SCENARIO} at "
        f"{HEADLINE_TRAFFIC.label}: " + ("n/a" if power is None else f"{power:.1%}")
    )
    return lines


def _json(
    rates: dict[str, Rate], detections: dict[tuple[str, str], dict[str, Detection]], calibration: Calibration,
    targets: dict[str, Any], aa_runs: int,
) -> dict[str, Any]:
    headline = detections.get((HEADLINE_TRAFFIC.label, HEADLINE_SCENARIO), {})
    siskin_rate = rates["siskin"]
    return {
        "alpha": ALPHA,
        "aa_runs": aa_runs,
        "aa_false_rollback_rate": round(siskin_rate.rate, 5),
        "aa_false_rollback_upper95": round(siskin_rate.interval[1], 5),
        "aa_false_rollback_rate_by_judge": {judge: round(rates[judge].rate, 5) for judge in JUDGES},
        "headline": f"{HEADLINE_SCENARIO} @ {HEADLINE_TRAFFIC.label}",
        "ttd_median_s": {judge: headline[judge].median_s if judge in headline else None for judge in JUDGES},
        "power_15min": {judge: round(headline[judge].power_15, 4) if judge in headline else None for judge in JUDGES},
        "kayenta_calibrated_confidence": calibration.confidence,
        "kayenta_calibrated_one_minus_confidence": float(2 * _norm_sf(calibration.z)),
        "kayenta_calibrated_first_judged_window": calibration.first_look + 1,
        "oracle_aa_note": f"oracle A/A rate uses H1 ratio {SPRT_AA_RATIO:g} on both metrics (reference only)",
        "targets": {k: v for k, v in targets.items() if isinstance(v, bool)},
    }


def _norm_sf(z: float) -> float:
    from scipy.special import ndtr

    return float(ndtr(-z)) if math.isfinite(z) else (0.0 if z > 0 else 1.0)


if __name__ == "__main__":
    sys.exit(main())
