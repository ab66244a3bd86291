"""Scaling and rolling restarts under load: how long until done, and how long writes stalled.

In one sandbox of the chart (real etcd, member agent, scale-down hook), with the end-to-end tests'
background writer running throughout, it repeats N times: `sandbox upgrade --set replicas=5`,
`--set replicas=3`, and a rolling restart (a pod-template change). For each change it measures

- done: from the start of the upgrade until the member list equals the pods, every member votes,
  and `etcdctl endpoint health --cluster` passes on all of them;
- outage: the longest time in which the writer got no write acknowledged;

and prints the medians and worst cases beside the goals (done under 15 s; outage under 2 s for a
scale step, under 1 s for a rolling restart, where etcd hands leadership off on SIGTERM).
Between changes the cluster is left alone for `--settle` seconds (default 10): etcd refuses a
membership change until every voter has been connected for 5 s, so a scale-up started right
after a restart or another scale-up waits up to 5 s more per member (`--settle 0` shows it).
Usage: `python bench/lifecycle.py [--runs 3] [--settle 10]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from etcd_chart.sandbox.client import Sandbox  # noqa: E402
from ledger import Ledger  # noqa: E402
from membership import client_tls, endpoints, pod_names, wait_converged  # noqa: E402

DONE_GOAL = 15.0
OUTAGE_GOALS = {"scale 3 -> 5": 2.0, "scale 5 -> 3": 2.0, "rolling restart (3)": 1.0}


def measure(
    sb: Sandbox, ledger: Ledger, chart: str, settle: float, before: int, after: int, *extra: str
) -> tuple[float, float]:
    time.sleep(settle)
    if after < before:
        ledger.set_endpoints(endpoints(sb.status(), pod_names(after)))
    ledger.take_outage()
    start = time.monotonic()
    sb.upgrade(chart, "--set", f"replicas={after}", *extra, timeout=240)
    wait_converged(sb, after, timeout=120)
    done = time.monotonic() - start
    ledger.set_endpoints(endpoints(sb.status(), pod_names(after)))
    return done, ledger.take_outage()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--chart", default=str(REPO / "chart"))
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {
        "scale 3 -> 5": [],
        "scale 5 -> 3": [],
        "rolling restart (3)": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        sb = Sandbox(Path(tmp) / "state")
        sb.up(
            args.chart,
            *("--set", "podAnnotations.rollout=r0"),
            timeout=240,
        )
        ledger: Ledger | None = None
        try:
            wait_converged(sb, 3)
            status = sb.status()
            ledger = Ledger(endpoints(status, pod_names(3)), tls=client_tls(status)).start()
            # Every upgrade carries the current rollout annotation, so that only the rolling
            # restart step changes the pod template.
            for run in range(args.runs):
                same = ("--set", f"podAnnotations.rollout=r{run}")
                changes = (
                    ("scale 3 -> 5", 3, 5, same),
                    ("scale 5 -> 3", 5, 3, same),
                    ("rolling restart (3)", 3, 3, ("--set", f"podAnnotations.rollout=r{run + 1}")),
                )
                for change, before, after, extra in changes:
                    results[change].append(
                        measure(sb, ledger, args.chart, args.settle, before, after, *extra)
                    )
            ledger.stop()
            lost = ledger.verify()
        finally:
            if ledger is not None:
                ledger.stop()
            sb.down(purge=True)
    print(
        f"{'change':<22} {'done median s':>13} {'done worst s':>12} {'goal':>6}   "
        f"{'outage median s':>15} {'outage worst s':>14} {'goal':>6}"
    )
    for change, samples in results.items():
        done = [d for d, _ in samples]
        outage = [o for _, o in samples]
        print(
            f"{change:<22} {statistics.median(done):>13.2f} {max(done):>12.2f} {DONE_GOAL:>6.1f}   "
            f"{statistics.median(outage):>15.2f} {max(outage):>14.2f} {OUTAGE_GOALS[change]:>6.1f}"
        )
    print(
        f"{args.runs} runs, {args.settle:.0f} s settle; "
        f"{len(ledger.acknowledged) if ledger else 0} writes acknowledged, {len(lost)} lost"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
