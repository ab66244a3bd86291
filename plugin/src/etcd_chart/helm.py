"""Locating and running helm: `helm4`/`helm3` (the names ci/install-tools.sh caches them under), or
the `helm` on PATH, whose version is checked."""

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


def isolated_helm_env(base: Path, kubeconfig: str, **extra: str) -> dict[str, str]:
    """The environment for a Helm whose data, config, cache and plugins live under `base`: one
    such home per Helm major version (a Helm 4 plugin.yaml where Helm 3 looks breaks Helm 3)."""
    return {
        **os.environ,
        "HELM_DATA_HOME": str(base / "data"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_CACHE_HOME": str(base / "cache"),
        # helm 4.3 installs into $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says.
        "HELM_PLUGINS": str(base / "data" / "plugins"),
        "KUBECONFIG": kubeconfig,
        "ETCD_CHART_NO_TTY": "1",
        **extra,
    }


INSTALL_SCRIPT = REPO_ROOT / "ci" / "install-tools.sh"


def _helm_needed(what: str) -> str:
    text = f"{what}; install Helm 3 or 4 and put it on PATH as `helm`"
    if INSTALL_SCRIPT.is_file():
        text += f" (in this clone, `bash {INSTALL_SCRIPT}` fetches both into {CACHE_BIN})"
    return text


def find_helm(major: int | None = None) -> str:
    """A helm of version `major` (any of 3 and 4 when None): `helm4`/`helm3` from the cache or
    PATH, else `helm` from PATH after checking its version."""
    names = [f"helm{major}"] if major is not None else ["helm4", "helm3"]
    for name in names:
        try:
            return find_tool(name)
        except ToolMissing:
            continue
    found = shutil.which("helm")
    if found is None:
        wanted = f"Helm {major}" if major is not None else "helm"
        raise ToolMissing(_helm_needed(f"{wanted} is not installed"))
    try:
        version = helm_major(found)
    except (OSError, ValueError, subprocess.CalledProcessError) as err:
        raise ToolMissing(_helm_needed(f"`{found} version` failed ({err})")) from err
    if version not in (3, 4) or (major is not None and version != major):
        wanted = f"Helm {major}" if major is not None else "Helm 3 or 4"
        raise ToolMissing(
            f"{found} is Helm {version}, not {wanted}; put {wanted} on PATH as `helm`"
            + (f" or `helm{major}`" if major is not None else "")
        )
    return found


def helm_major(helm: str) -> int:
    out = subprocess.run(
        [helm, "version", "--short"], capture_output=True, text=True, check=True, timeout=30
    )
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
