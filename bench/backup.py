"""Benchmark of backup and restore: `python bench/backup.py [--keys 100000] [--runs 3]`.

A one-member etcd (the chart's default image version from .cache/bin) holds `--keys` keys of
100 bytes. Then, side by side and interleaved so that machine noise hits both alike:

- backup by hand: `etcdctl snapshot save`;
  the chart's backup: the backup pod's three steps as its containers run them: `etcdctl snapshot
  save`, `etcdutl snapshot status`, and the agent's `backup --directory` (SHA-256 check, revision
  read, copy with fsync, prune);
- restore by hand: `etcdutl snapshot restore`;
  the chart's restore: the agent's staging (`restore-fetch`'s copy and check of the snapshot from
  a claim) and `etcdutl snapshot restore` with the release's flags.

Prints the median seconds of each and the ratios chart / by hand. No assertions.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "chart" / "files" / "etcd-agent"
sys.path.insert(0, str(REPO / "plugin" / "src"))

from etcd_chart.helm import find_tool  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return elapsed


def fill(url: str, keys: int) -> None:
    """`keys` puts of 100-byte values, 100 per transaction, through the JSON gateway."""
    value = base64.b64encode(b"v" * 100).decode()
    for start in range(0, keys, 100):
        puts = [
            {
                "request_put": {
                    "key": base64.b64encode(f"/bench/{n:08d}".encode()).decode(),
                    "value": value,
                }
            }
            for n in range(start, min(keys, start + 100))
        ]
        request = urllib.request.Request(
            f"{url}/v3/kv/txn", data=json.dumps({"success": puts}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local etcd
            response.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    etcd, etcdctl, etcdutl = (find_tool(name) for name in ("etcd", "etcdctl", "etcdutl"))
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    server = subprocess.Popen(
        [
            etcd,
            "--name=bench",
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=bench=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(
            [etcdctl, f"--endpoints={url}", "endpoint", "health"], capture_output=True
        ).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("etcd did not start")
            time.sleep(0.1)
        fill(url, args.keys)
        claim = work / "claim"
        claim.mkdir()
        agent = [sys.executable, str(AGENT)]
        restore_flags = [
            "--name=etcd-0",
            "--initial-cluster=etcd-0=http://etcd-0.etcd-headless.default.svc.cluster.local:2380",
            "--initial-cluster-token=etcd-default",
            "--initial-advertise-peer-urls=http://etcd-0.etcd-headless.default.svc.cluster.local:2380",
        ]
        times: dict[str, list[float]] = {
            k: [] for k in ("backup-hand", "backup-chart", "restore-hand", "restore-chart")
        }
        stage = [
            sys.executable,
            "-c",
            "import shutil, sys; sys.path.insert(0, sys.argv[1]);"
            " from snapshot_file import read_snapshot; shutil.copyfile(sys.argv[2], sys.argv[3]);"
            " read_snapshot(sys.argv[3])",
            str(AGENT),
        ]
        for run_number in range(args.runs):
            hand = work / f"hand-{run_number}.db"
            times["backup-hand"].append(
                run([etcdctl, f"--endpoints={url}", "snapshot", "save", str(hand)])
            )
            pod = work / f"pod-{run_number}.db"
            times["backup-chart"].append(
                run([etcdctl, f"--endpoints={url}", "snapshot", "save", str(pod)])
                + run([etcdutl, "snapshot", "status", str(pod), "--write-out=table"])
                + run(
                    [
                        *agent,
                        "backup",
                        "--snapshot",
                        str(pod),
                        "--name",
                        "etcd",
                        "--keep",
                        "2",
                        "--directory",
                        str(claim),
                    ]
                )
            )
            target = work / f"restore-hand-{run_number}"
            times["restore-hand"].append(
                run(
                    [
                        etcdutl,
                        "snapshot",
                        "restore",
                        str(hand),
                        f"--data-dir={target}",
                        *restore_flags,
                    ]
                )
            )
            staged = work / f"staged-{run_number}.db"
            target = work / f"restore-chart-{run_number}"
            times["restore-chart"].append(
                run([*stage, str(pod), str(staged)])
                + run(
                    [
                        etcdutl,
                        "snapshot",
                        "restore",
                        str(staged),
                        f"--data-dir={target}",
                        *restore_flags,
                    ]
                )
            )
        size = (work / "hand-0.db").stat().st_size
        print(f"{args.keys} keys, snapshot {size / 1e6:.1f} MB, median of {args.runs} runs")
        print(f"{'step':<10} {'by hand':>10} {'chart':>10} {'ratio':>7}")
        for step in ("backup", "restore"):
            hand_s = statistics.median(times[f"{step}-hand"])
            chart_s = statistics.median(times[f"{step}-chart"])
            print(f"{step:<10} {hand_s:>9.2f}s {chart_s:>9.2f}s {chart_s / hand_s:>6.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
