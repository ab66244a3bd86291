"""Locating and running the helm binaries (Helm 3 and Helm 4) that ci/install-tools.sh caches."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE_BIN = Path(os.environ.get("ETCD_CHART_CACHE", REPO_ROOT / ".cache")) / "bin"


class ToolMissing(RuntimeError):
    """A required program is not installed; the message says how to get it."""


def find_tool(name: str) -> str:
    """Path of `name` from the cache `ci/install-tools.sh` fills, else from PATH."""
    cached = CACHE_BIN / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(f"{name} is not installed; run `bash ci/install-tools.sh` to fetch it")


def find_helm(major: int | None = None) -> str:
    """`helm4`/`helm3` from the cache, or `helm` from PATH when no major version is asked for."""
    if major is not None:
        return find_tool(f"helm{major}")
    for name in ("helm4", "helm3", "helm"):
        try:
            return find_tool(name)
        except ToolMissing:
            continue
    raise ToolMissing("helm is not installed; run `bash ci/install-tools.sh` to fetch it")


def helm_major(helm: str) -> int:
    out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().lstrip("v").split(".")[0])


def template(
    chart: str | Path,
    args: list[str],
    release: str = "etcd",
    namespace: str = "default",
    helm: str | None = None,
) -> str:
    """`helm template` output; raises CalledProcessError with Helm's stderr on failure."""
    helm = helm or find_helm()
    command = [helm, "template", release, str(chart), "--namespace", namespace, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, command, result.stdout, result.stderr
        )
    return result.stdout
