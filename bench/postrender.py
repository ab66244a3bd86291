"""Benchmark of the post-renderer: `python bench/postrender.py [--runs N]`.

1. `helm template` of the chart, with and without the post-renderer, run side by side
   (interleaved, so that machine noise hits both alike): Helm 4 with the installed plugin and
   Helm 3 with the executable. Prints the median of each and their ratio (goal: <= 1.3).
2. `etcd-chart post-render` of synthetic streams of 5,000, 10,000 and 20,000 documents (the chart's
   own objects plus ConfigMaps), as a process: median seconds (goal: < 2 s for 10,000; linear).

Offline (`KUBECONFIG=/dev/null`), so that no cluster is contacted. Prints a table; no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin" / "src"))

from etcd_chart.helm import find_tool, isolated_helm_env  # noqa: E402

WRAPPER = REPO / "plugin" / "bin" / "etcd-post-render"
CHART = REPO / "chart"


def helm_env(home: Path, major: int) -> dict[str, str]:
    return isolated_helm_env(home / f"helm{major}", os.devnull)


def timed(command: list[str], env: dict[str, str], stdin: bytes | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode()}")
    return elapsed


def side_by_side(
    label: str, plain: list[str], rendered: list[str], env: dict[str, str], runs: int
) -> tuple[str, float, float]:
    timed(plain, env)  # warm the file cache
    timed(rendered, env)
    without, with_ = [], []
    for _ in range(runs):
        without.append(timed(plain, env))
        with_.append(timed(rendered, env))
    return label, statistics.median(without), statistics.median(with_)


def synthetic_stream(documents: int, base: str) -> bytes:
    base_count = base.count("\n---\n") + 1
    chunks = [base]
    for i in range(max(0, documents - base_count)):
        chunks.append(
            f"---\n# Source: etcd/templates/extra-{i % 50}.yaml\napiVersion: v1\nkind: ConfigMap\n"
            f"metadata:\n  name: extra-{i}\n  namespace: default\n  labels:\n"
            f"    app.kubernetes.io/name: extra\n    app.kubernetes.io/instance: etcd\n"
            f'data:\n  key: "value {i}"\n  script: |\n    echo {i}\n    exit 0\n'
        )
    return "".join(chunks).encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each side (median)")
    parser.add_argument("--stream-runs", type=int, default=3, help="runs per synthetic stream")
    args = parser.parse_args(argv)
    helm3, helm4 = find_tool("helm3"), find_tool("helm4")
    python = REPO / ".cache" / "venv" / "bin" / "python"
    interpreter = str(python) if python.exists() else sys.executable

    # An installed package has its bytecode compiled; a source checkout under
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every run.
    subprocess.run(
        [interpreter, "-m", "compileall", "-q", str(REPO / "plugin" / "src" / "etcd_chart")],
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-postrender-") as tmp:
        home = Path(tmp)
        env4, env3 = helm_env(home, 4), helm_env(home, 3)
        subprocess.run(
            [helm4, "plugin", "install", str(REPO / "plugin")],
            env=env4,
            capture_output=True,
            check=True,
        )
        template4 = [helm4, "template", "etcd", str(CHART)]
        template3 = [helm3, "template", "etcd", str(CHART)]
        rows = [
            side_by_side(
                "helm4 template (plugin etcd-chart)",
                template4,
                [*template4, "--post-renderer", "etcd-chart"],
                env4,
                args.runs,
            ),
            side_by_side(
                "helm3 template (plugin/bin/etcd-post-render)",
                template3,
                [*template3, "--post-renderer", str(WRAPPER)],
                env3,
                args.runs,
            ),
        ]
        print(
            "helm template with and without the post-renderer, "
            f"median of {args.runs} interleaved runs"
        )
        print(f"{'':46} {'without':>9} {'with':>9} {'ratio':>7}  (goal <= 1.3)")
        for label, without, with_ in rows:
            print(f"{label:46} {without:8.3f}s {with_:8.3f}s {with_ / without:7.2f}")

        base = subprocess.run(
            template4, env=env4, capture_output=True, text=True, check=True
        ).stdout
        print()
        print(
            "etcd-chart post-render of a synthetic stream, "
            f"median of {args.stream_runs} runs (goal < 2 s at 10,000)"
        )
        print(f"{'documents':>10} {'seconds':>9} {'us/doc':>8}")
        command = [interpreter, "-m", "etcd_chart.cli", "post-render"]
        stream_env = {**env4, "PYTHONPATH": str(REPO / "plugin" / "src")}
        for count in (5000, 10000, 20000):
            data = synthetic_stream(count, base)
            seconds = statistics.median(
                timed(command, stream_env, data) for _ in range(args.stream_runs)
            )
            print(f"{count:>10,} {seconds:8.3f}s {seconds / count * 1e6:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
