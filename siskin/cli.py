"""Command line: ``siskin`` (and ``kubectl siskin`` through the ``kubectl-siskin`` plugin name).

Rollout commands talk to whatever cluster the kubeconfig names (the sandbox
writes one); they steer a Rollout by annotating it, and the operator acts on
the annotation at most once per revision and step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from siskin.display import metric_lines, progress_line, table


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``siskin``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except KeyboardInterrupt:
        return 130
    except CLIError as exc:
        print(f"siskin: {exc}", file=sys.stderr)
        return 1


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siskin", description="Progressive delivery with statistically judged canaries."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the sandbox demo: v2 (healthy) is promoted, v3 (bad) rolled back")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    demo.add_argument("--rps", type=float, default=300.0, help="load on the demo service (requests/s)")
    demo.add_argument("--judge", choices=["sequential", "mannWhitney"], default="sequential",
                      help="the analysis judge: Siskin's sequential test, or the Kayenta-compatible Mann-Whitney")
    demo.set_defaults(run=_demo)

    sandbox = sub.add_parser("sandbox", help="start or stop the embedded sandbox cluster")
    sandbox.add_argument("action", choices=["up", "down", "status"])
    sandbox.add_argument("--state-dir", type=Path, default=Path(".siskin/sandbox"))
    sandbox.add_argument("--load", action="append", default=[], metavar="'KIND NS/NAME@RPS'",
                         help="keep load on an HTTPRoute or Service, e.g. 'HTTPRoute default/podinfo@200'")
    sandbox.set_defaults(run=_sandbox)

    operator = sub.add_parser("operator", help="run the operator against the current kubeconfig")
    operator.add_argument("--namespace", "-n", action="append", help="watch only these namespaces")
    operator.add_argument("--prometheus-url", help="Prometheus for templates that name no address")
    operator.add_argument("--verbose", "-v", action="store_true")
    operator.set_defaults(run=_operator)

    get = sub.add_parser("get", help="list Rollouts")
    get.add_argument("name", nargs="?")
    _namespace(get)
    get.set_defaults(run=_get)

    status = sub.add_parser("status", help="show a Rollout's steps, analysis figures and conditions")
    status.add_argument("name")
    status.add_argument("--watch", "-w", action="store_true", help="refresh until interrupted")
    _namespace(status)
    status.set_defaults(run=_status)

    analysis = sub.add_parser("analysis", help="check AnalysisTemplates against stored metrics")
    analysis_sub = analysis.add_subparsers(metavar="ACTION")
    backtest = analysis_sub.add_parser(
        "backtest", help="A/A replay: how often a template would roll back a healthy release",
        description="Replay an AnalysisTemplate over Prometheus history with canary and baseline both drawn "
                    "from the stable pods (split in two fixed halves) and report the false-rollback rate.",
        epilog="Times: RFC 3339 (2026-01-02T03:04:05Z), unix seconds, now, or relative (-6h, now-30m). "
               "Exit codes: 0 trusted, 3 not trusted, 1 error.")
    backtest.add_argument("template", metavar="TEMPLATE", help="AnalysisTemplate YAML file, or - for stdin")
    backtest.add_argument("--prometheus", metavar="URL", help="Prometheus to read (default: the template's address)")
    backtest.add_argument("--from", dest="start", required=True, metavar="T1", help="start of the replayed range")
    backtest.add_argument("--to", dest="end", default="now", metavar="T2", help="end of the range (default: now)")
    backtest.add_argument("--namespace", "-n", default="default", help="value of {{namespace}} (default: default)")
    backtest.add_argument("--name", default="", metavar="ROLLOUT", help="value of {{name}}: the Rollout's name")
    backtest.add_argument("--arg", action="append", default=[], metavar="K=V", help="template arg value (repeatable)")
    backtest.add_argument("--run-length", metavar="DURATION",
                          help="length of one replayed analysis (default: max(3 x minDuration, 10m))")
    backtest.add_argument("--pod-label", default="pod", help="label holding the pod name (default: pod)")
    backtest.add_argument("--json", action="store_true", help="also print the report as one JSON object, last line")
    backtest.set_defaults(run=_backtest)
    # Relative times such as -6h are values, not options.
    backtest._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?(ms|s|m|h|d|w)?$")

    for name, help_text in (("promote", "continue a paused Rollout (or all steps with --full)"),
                            ("abort", "roll the canary back now"),
                            ("retry", "start an aborted revision again from step 0")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("name")
        if name == "promote":
            command.add_argument("--full", action="store_true", help="skip the remaining steps")
        _namespace(command)
        command.set_defaults(run=_steer, verb=name)
    return parser


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", default=None, help="namespace (default: the kubeconfig's)")


# ----------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from siskin.demo import run_demo

    return run_demo(json_output=args.json, rps=args.rps, judge=args.judge)


def _sandbox(args: argparse.Namespace) -> int:
    from siskin.sandbox import cluster

    if args.action == "up":
        try:
            loads = [cluster.parse_load(text) for text in args.load]
            cluster.sandbox_up(args.state_dir, loads=loads)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    elif args.action == "down":
        cluster.sandbox_down(args.state_dir)
    else:
        running = cluster.running_sandbox(args.state_dir)
        print(running.describe() if running else "no sandbox is running")
    return 0


def _operator(args: argparse.Namespace) -> int:
    import os

    import kopf

    if args.prometheus_url:
        os.environ["SISKIN_PROMETHEUS_URL"] = args.prometheus_url
    import siskin.operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose)
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or [])
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from siskin.analysis.backtest import BacktestError, backtest_command

    try:
        return backtest_command(
            args.template, prometheus=args.prometheus, start=args.start, end=args.end, namespace=args.namespace,
            name=args.name, args=args.arg, run_length=args.run_length, pod_label=args.pod_label,
            json_output=args.json,
        )
    except BacktestError as exc:
        raise CLIError(f"analysis backtest: {exc}") from None


def _kube() -> Any:
    from siskin.operator.kube import KubeAPI

    try:
        return KubeAPI()
    except Exception as exc:  # kubeconfig missing or unreadable
        raise CLIError(f"cannot reach a cluster: {exc}. Set KUBECONFIG (the sandbox prints it).") from None


def _current_namespace(namespace: str | None) -> str:
    if namespace:
        return namespace
    try:
        import kubernetes

        _, context = kubernetes.config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        return str(context.get("context", {}).get("namespace") or "default")
    except Exception:
        return "default"


def _rollout(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    from siskin.operator.kube import ROLLOUTS

    body = kube.get(ROLLOUTS, namespace, name)
    if body is None:
        raise CLIError(f"Rollout {namespace}/{name} not found (siskin get -n {namespace} lists them)")
    return dict(body)


def _get(args: argparse.Namespace) -> int:
    from siskin.operator.kube import ROLLOUTS

    kube = _kube()
    namespace = _current_namespace(args.namespace)
    items = [_rollout(kube, namespace, args.name)] if args.name else kube.list(ROLLOUTS, namespace)
    rows = []
    for item in items:
        status = item.get("status") or {}
        steps = len(item.get("spec", {}).get("strategy", {}).get("canary", {}).get("steps") or [])
        index = status.get("currentStepIndex")
        rows.append([item["metadata"]["name"], status.get("phase", "-"),
                     f"{index}/{steps}" if index is not None else "-", status.get("canaryWeight", 0),
                     status.get("verdict") or "-", status.get("message", "")])
    print(table(["NAME", "PHASE", "STEP", "WEIGHT", "VERDICT", "MESSAGE"], rows))
    return 0


def describe(body: dict[str, Any]) -> str:
    """A Rollout's state in full: steps, analysis figures, conditions and history."""
    status = body.get("status") or {}
    steps = body.get("spec", {}).get("strategy", {}).get("canary", {}).get("steps") or []
    index = status.get("currentStepIndex")
    lines = [f"Rollout {body['metadata'].get('namespace')}/{body['metadata']['name']}",
             f"  {progress_line(status, len(steps))}",
             f"  stable {status.get('stableRevision', '-')}  canary {status.get('canaryRevision') or '-'}",
             "  steps:"]
    for i, step in enumerate(steps):
        marker = "→" if i == index else ("✓" if index is not None and i < index else " ")
        lines.append(f"    {marker} {i + 1}. {json.dumps(step, separators=(',', ':'))}")
    figures = metric_lines(status)
    if figures:
        lines.append("  analysis:")
        lines += [f"    {line}" for line in figures]
    if status.get("conditions"):
        lines.append("  conditions:")
        for c in status["conditions"]:
            lines.append(f"    {c['type']:<13} {c['status']:<6} {c.get('reason', '')}")
    if status.get("history"):
        lines.append("  history:")
        for h in status["history"][-5:]:
            lines.append(f"    {h['at']}  {h['revision']}  {h['outcome']:<10} {h.get('reason', '')}")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    kube = _kube()
    namespace = _current_namespace(args.namespace)
    while True:
        text = describe(_rollout(kube, namespace, args.name))
        if not args.watch:
            print(text)
            return 0
        print("\033[2J\033[H" + text, flush=True)
        time.sleep(2)


def _steer(args: argparse.Namespace) -> int:
    from siskin.operator.kube import ROLLOUTS
    from siskin.operator.naming import ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY

    kube = _kube()
    namespace = _current_namespace(args.namespace)
    body = _rollout(kube, namespace, args.name)
    status = body.get("status") or {}
    nonce = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
    annotations: dict[str, str | None]
    where = f"Rollout {namespace}/{args.name}"
    canary = status.get("canaryRevision")
    aborted = status.get("abortedRevision")
    if args.verb in ("promote", "abort"):
        if not canary:
            raise CLIError(f"{where} has no canary in progress; nothing to {args.verb}")
        if aborted == canary:
            raise CLIError(f"{where}: revision {canary} is already rolled back; "
                           f"`siskin retry {args.name}` starts it again")
    if args.verb == "promote":
        index = int(status.get("currentStepIndex") or 0)
        steps = body.get("spec", {}).get("strategy", {}).get("canary", {}).get("steps") or []
        if not args.full and index < len(steps) and "setWeight" in steps[index]:
            raise CLIError(f"{where} is at step {index + 1}/{len(steps)} (setWeight), which completes by itself; "
                           "promote applies to pause and analysis steps, or use --full")
        step = "full" if args.full else str(index)
        annotations = {ANNOTATION_PROMOTE: f"{canary}:{step}@{nonce}"}
        done = (f"promote of revision {canary} requested "
                + ("for all remaining steps" if args.full else f"at step {index + 1}/{len(steps)}"))
    elif args.verb == "abort":
        annotations = {ANNOTATION_ABORT: f"{canary}@{nonce}"}
        done = f"abort of revision {canary} requested"
    else:
        if not aborted:
            raise CLIError(f"{where} is not rolled back; nothing to retry")
        annotations = {ANNOTATION_RETRY: f"{aborted}@{nonce}", ANNOTATION_ABORT: None}
        done = f"retry of revision {aborted} requested"
    kube.patch(ROLLOUTS, namespace, args.name, {"metadata": {"annotations": annotations}})
    print(f"rollout.siskin.dev/{args.name}: {done}")
    return 0
