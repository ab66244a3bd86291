"""Rendering for the sandbox: `helm template`, then the post-renderer, as `helm install` does.

The post-renderer runs as a subprocess (`python -m etcd_chart.cli post-render`) with
`KUBECONFIG` pointing at the sandbox's control plane, so that on `upgrade` it sees the live
StatefulSet and the cluster record as on any cluster.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcd_chart.helm import ToolMissing, find_helm
from etcd_chart.yamlio import YamlError, load

DEFAULT_CLUSTER_DOMAIN = "cluster.local"


class RenderError(Exception):
    """Rendering failed; `code` is 1 for bad input, 2 when a tool could not run."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class RenderArgs:
    chart: str | None = None
    manifest: str | None = None
    release: str = "etcd"
    namespace: str = "default"
    values: list[str] = field(default_factory=list)
    set: list[str] = field(default_factory=list)
    set_string: list[str] = field(default_factory=list)
    helm_version: int | None = None
    cluster_domain: str | None = None
    helm: str | None = None  # an explicit helm binary (--helm)

    def find_helm(self) -> str:
        if self.helm:
            if not (Path(self.helm).is_file() and os.access(self.helm, os.X_OK)):
                raise ToolMissing(f"--helm {self.helm}: not an executable file")
            return self.helm
        return find_helm(self.helm_version)

    def helm_args(self) -> list[str]:
        out: list[str] = []
        for path in self.values:
            out += ["-f", path]
        for item in self.set:
            out += ["--set", item]
        for item in self.set_string:
            out += ["--set-string", item]
        return out


def _from_sets(items: list[str], key: str) -> str | None:
    found = None
    for item in items:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if sep and name.strip() == key:
                found = value.strip()
    return found


def cluster_domain(args: RenderArgs) -> str:
    """--cluster-domain, else `clusterDomain` from --set, -f or the chart, else cluster.local."""
    if args.cluster_domain:
        return args.cluster_domain
    from_sets = _from_sets(args.set_string, "clusterDomain") or _from_sets(
        args.set, "clusterDomain"
    )
    if from_sets:
        return from_sets
    files = list(args.values)
    if args.chart:
        files.insert(0, str(Path(args.chart) / "values.yaml"))
    found = None
    for path in files:
        try:
            data: Any = load(Path(path).read_text())
        except (OSError, YamlError):
            continue
        if isinstance(data, dict) and data.get("clusterDomain"):
            found = str(data["clusterDomain"])
    return found or DEFAULT_CLUSTER_DOMAIN


def helm_template(args: RenderArgs) -> str:
    try:
        helm = args.find_helm()
    except ToolMissing as err:
        raise RenderError(str(err), 2) from err
    command = [
        helm,
        "template",
        args.release,
        str(args.chart),
        "--namespace",
        args.namespace,
        *args.helm_args(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RenderError(f"helm template failed:\n{_helm_message(result.stderr, command)}", 1)
    return result.stdout


def _helm_message(stderr: str, command: list[str]) -> str:
    """Helm's message, with its advice to pass `--debug` (a helm flag the sandbox does not take)
    turned into the helm command to run."""
    lines = []
    for line in stderr.strip().splitlines():
        if line.startswith("Use --debug flag"):
            shown = " ".join(shlex.quote(part) for part in [*command, "--debug"])
            lines.append(f"(to see the invalid YAML, run helm yourself: {shown})")
        else:
            lines.append(line)
    return "\n".join(lines)


def post_render(text: str, kubeconfig: Path) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "ETCD_CHART_NO_TTY": "1"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "etcd_chart.cli", "post-render"],
        input=text,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        code = result.returncode if result.returncode in (1, 2) else 2
        raise RenderError(f"post-render failed:\n{result.stderr.strip()}", code)
    return result.stdout


def source(args: RenderArgs) -> str:
    """What goes into the post-renderer: `helm template` output, or the --manifest file."""
    if args.manifest:
        try:
            text = Path(args.manifest).read_text()
        except OSError as err:
            raise RenderError(f"{args.manifest}: cannot read: {err.strerror}", 2) from err
        return text
    return helm_template(args)
