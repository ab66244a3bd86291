"""Bootstrap time: `etcd-chart sandbox up` until every member is Ready, vs etcd started by hand.

For 3 and 5 members, interleaved over N runs, it measures

- sandbox: the wall time of `etcd-chart sandbox up` (the control plane starts, `helm install`
  with the post-renderer, the process kubelet runs the pods: init containers, etcd, probes) until
  it returns with every pod Ready, split into control plane ready, release installed and all
  members Ready;
- by hand: the same etcd binary started directly with static flags (one loopback address per
  member, the same ports and cluster size), until every member's `/readyz` answers 200;

and prints the medians side by side with their ratio, the control plane's peak resident memory
(the sum of its processes' VmHWM) and the sandbox daemon's.
Usage: `python bench/bootstrap.py [--runs 5] [--members 3 5] [--manifest FILE]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from etcd_chart.helm import find_tool

REPO = Path(__file__).resolve().parents[1]
SANDBOX = [sys.executable, "-m", "etcd_chart.cli", "sandbox"]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def by_hand(members: int, work: Path, subnet: str) -> float:
    """Seconds from starting `members` etcd processes until every /readyz answers 200."""
    etcd = find_tool("etcd")
    names = [f"m{i}" for i in range(members)]
    addresses = [f"{subnet}.{10 + i}" for i in range(members)]
    cluster = ",".join(f"{n}=http://{a}:2380" for n, a in zip(names, addresses, strict=True))
    processes = []
    start = time.monotonic()
    try:
        for name, address in zip(names, addresses, strict=True):
            processes.append(
                subprocess.Popen(  # noqa: S603
                    [
                        etcd,
                        f"--name={name}",
                        f"--data-dir={work / name}",
                        f"--listen-peer-urls=http://{address}:2380",
                        f"--listen-client-urls=http://{address}:2379",
                        f"--listen-metrics-urls=http://{address}:8080",
                        f"--initial-advertise-peer-urls=http://{address}:2380",
                        f"--advertise-client-urls=http://{address}:2379",
                        f"--initial-cluster={cluster}",
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=bench",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        pending = [f"http://{a}:8080/readyz" for a in addresses]
        while pending:
            pending = [url for url in pending if not _ready(url)]
            if pending:
                time.sleep(0.05)
        return time.monotonic() - start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


PHASES = re.compile(
    r"control plane ready in ([\d.]+) s, release installed ([\d.]+) s later, "
    r"all Ready ([\d.]+) s after that"
)


def _control_plane_peak_kib(state: Path) -> int:
    records = json.loads((state / "processes.json").read_text())
    return sum(
        _peak_rss_kib(int(entry["pid"]))
        for key, entry in records.items()
        if key.startswith("control-plane/")
    )


def in_sandbox(members: int, work: Path, source: list[str]) -> tuple[float, list[float], int, int]:
    """`sandbox up`: total seconds, [control plane ready, release installed, all Ready] seconds,
    the daemon's and the control plane's peak RSS in KiB."""
    state = work / "state"
    command = [*SANDBOX, "up", *source, "--state-dir", str(state)]
    if source[0] != "--manifest":
        command += ["--set", f"replicas={members}"]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    elapsed = time.monotonic() - start
    try:
        if result.returncode != 0:
            raise SystemExit(f"sandbox up failed ({result.returncode}):\n{result.stderr}")
        found = PHASES.search(result.stdout)
        if found is None:
            raise SystemExit(f"sandbox up did not report its phases:\n{result.stdout}")
        pid = int((state / "daemon.pid").read_text())
        phases = [float(found.group(i)) for i in (1, 2, 3)]
        return elapsed, phases, _peak_rss_kib(pid), _control_plane_peak_kib(state)
    finally:
        subprocess.run(
            [*SANDBOX, "down", "--purge", "--state-dir", str(state)],
            capture_output=True,
            check=False,
        )  # noqa: S603


def _manifest_for(members: int, manifest: str, work: Path) -> list[str]:
    text = Path(manifest).read_text().replace("replicas: 3", f"replicas: {members}")
    path = work / f"manifest-{members}.yaml"
    path.write_text(text)
    # One Node per member (the docs' StatefulSet wants a host each) and PodSecurity baseline (it
    # sets no securityContext, which `restricted` refuses).
    return ["--manifest", str(path), "--nodes", str(members), "--pod-security", "baseline"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--chart", default=str(REPO / "chart"))
    parser.add_argument(
        "--manifest", help="boot this manifest (replicas: 3 is replaced) instead of the chart"
    )
    parser.add_argument("--subnet", default="127.199.42", help="/24 for the etcd started by hand")
    args = parser.parse_args(argv)
    print(
        f"{'members':>7} {'sandbox s':>10} {'by hand s':>10} {'ratio':>6} {'plane s':>8} "
        f"{'helm s':>7} {'ready s':>8} {'plane peak RSS':>15} {'daemon peak RSS':>16}"
    )
    for members in args.members:
        totals: list[float] = []
        hands: list[float] = []
        phases: list[list[float]] = []
        daemon_peaks: list[int] = []
        plane_peaks: list[int] = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-bootstrap-") as tmp:
                work = Path(tmp)
                hands.append(by_hand(members, work / "hand", args.subnet))
                source = (
                    _manifest_for(members, args.manifest, work) if args.manifest else [args.chart]
                )
                total, split, daemon_peak, plane_peak = in_sandbox(members, work, source)
                totals.append(total)
                phases.append(split)
                daemon_peaks.append(daemon_peak)
                plane_peaks.append(plane_peak)
        total_median, hand_median = statistics.median(totals), statistics.median(hands)
        plane, helm, ready = (statistics.median(p[i] for p in phases) for i in range(3))
        print(
            f"{members:>7} {total_median:>10.2f} {hand_median:>10.2f} "
            f"{total_median / hand_median:>6.2f} {plane:>8.2f} {helm:>7.2f} {ready:>8.2f} "
            f"{max(plane_peaks) / 1024:>11.1f} MiB {max(daemon_peaks) / 1024:>12.1f} MiB"
        )
    print(f"medians of {args.runs} interleaved runs; plane: control plane ready, helm: `helm")
    print("install` with the post-renderer (kubectl apply for a manifest), ready: from then")
    print("until every member is Ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
