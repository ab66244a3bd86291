"""Argo CD, as far as the chart sees it: the Config Management Plugin's `generate` command run the
way the CMP server runs it, and a sync emulated against a real API server with `kubectl apply`.

What Argo CD does on a sync, and what `sync` below does in the same order:
1. PreSync: Helm's `pre-install` and `pre-upgrade` hooks are PreSync hooks, applied by
   `helm.sh/hook-weight` (lowest first), an existing one deleted first (BeforeHookCreation, Argo
   CD's default); a Job must complete before the next weight. Then the hooks whose delete policy
   names `hook-succeeded` are deleted.
2. Sync: every other object, by `argocd.argoproj.io/sync-wave` (lowest first, default 0),
   `kubectl apply`.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from artifacts import REPO, run

PLUGIN = REPO / "deploy" / "argocd" / "plugin.yaml"
PRE_SYNC_HELM_HOOKS = {"pre-install", "pre-upgrade"}

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def unpacked_chart(package: Path, into: Path) -> Path:
    """The chart directory as Argo CD checks it out: the packaged chart's files."""
    with tarfile.open(package) as archive:
        archive.extractall(into, filter="data")
    return into / "etcd"


def sidecar_path(tmp_path: Path, helm: str, etcd_chart: Path) -> Path:
    """The programs of the sidecar image: helm, and the `etcd-chart` that pip installed from the
    built wheel (tests/built_package.py)."""
    bin_dir = tmp_path / "sidecar-bin"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(helm)
    (bin_dir / "etcd-chart").symlink_to(etcd_chart)
    return bin_dir


def parameter_environment(parameters: list[dict[str, Any]]) -> dict[str, str]:
    """ARGOCD_APP_PARAMETERS and the PARAM_* variables Argo CD derives from the same parameters:
    the name upper-cased with every other character than a letter or digit an underscore, arrays
    as _0, _1, ..., maps as _<KEY>."""

    def escaped(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    env = {"ARGOCD_APP_PARAMETERS": json.dumps(parameters)}
    for parameter in parameters:
        name = f"PARAM_{escaped(parameter['name'])}"
        if "string" in parameter:
            env[name] = parameter["string"]
        for index, item in enumerate(parameter.get("array", [])):
            env[f"{name}_{index}"] = item
        for key, value in parameter.get("map", {}).items():
            env[f"{name}_{escaped(key)}"] = value
    return env


def generate(
    app_dir: Path,
    path: list[Path],
    app_name: str,
    app_namespace: str,
    parameters: list[dict[str, Any]],
    kube_version: str = "",
    api_versions: str = "",
) -> subprocess.CompletedProcess[str]:
    """The plugin's generate command, run in the Application's source directory with the
    environment the CMP server gives it (PATH: the sidecar image's programs)."""
    spec = yaml.safe_load(PLUGIN.read_text())["spec"]["generate"]
    env = {
        "PATH": ":".join([*(str(p) for p in path), "/usr/bin", "/bin"]),
        "HOME": str(app_dir.parent / "home"),
        "KUBECONFIG": "/dev/null",
        "ETCD_CHART_NO_TTY": "1",
        "ARGOCD_APP_NAME": app_name,
        "ARGOCD_APP_NAMESPACE": app_namespace,
        "ARGOCD_APP_SOURCE_PATH": ".",
        "KUBE_VERSION": kube_version,
        "KUBE_API_VERSIONS": api_versions,
        **parameter_environment(parameters),
    }
    return run([*spec["command"], *spec.get("args", [])], env=env, cwd=app_dir)


def _annotations(body: dict[str, Any]) -> dict[str, str]:
    return dict((body.get("metadata") or {}).get("annotations") or {})


def _hook_weight(body: dict[str, Any]) -> int:
    return int(_annotations(body).get("helm.sh/hook-weight", "0"))


def _sync_wave(body: dict[str, Any]) -> int:
    return int(_annotations(body).get("argocd.argoproj.io/sync-wave", "0"))


def _is_pre_sync(body: dict[str, Any]) -> bool:
    hooks = {h.strip() for h in _annotations(body).get("helm.sh/hook", "").split(",")}
    return bool(hooks & PRE_SYNC_HELM_HOOKS)


def _apply(kubectl: Kubectl, namespace: str, bodies: list[dict[str, Any]]) -> list[str]:
    stream = "".join("---\n" + json.dumps(body) + "\n" for body in bodies)
    result = kubectl("-n", namespace, "apply", "-f", "-", stdin=stream)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def sync(kubectl: Kubectl, namespace: str, manifests: str, job_timeout: int = 180) -> list[str]:
    """One Argo CD sync of `manifests` into `namespace`; returns `kubectl apply`'s lines of the
    sync phase (`<kind>/<name> created|configured|unchanged`)."""
    bodies = [body for body in yaml.safe_load_all(manifests) if body]
    hooks = [body for body in bodies if _is_pre_sync(body)]
    for weight in sorted({_hook_weight(hook) for hook in hooks}):
        batch = [hook for hook in hooks if _hook_weight(hook) == weight]
        for hook in batch:
            kind, name = hook["kind"].lower(), hook["metadata"]["name"]
            deleted = kubectl("-n", namespace, "delete", kind, name, "--ignore-not-found", "--wait")
            assert deleted.returncode == 0, deleted.stderr
        _apply(kubectl, namespace, batch)
        for job in (h for h in batch if h["kind"] == "Job"):
            name = job["metadata"]["name"]
            done = kubectl("-n", namespace, "wait", "--for=condition=Complete", f"job/{name}",
                           f"--timeout={job_timeout}s")  # fmt: skip
            assert done.returncode == 0, f"PreSync Job {name}: {done.stderr}"
    for hook in hooks:
        if "hook-succeeded" in _annotations(hook).get("helm.sh/hook-delete-policy", ""):
            gone = kubectl("-n", namespace, "delete", hook["kind"].lower(),
                           hook["metadata"]["name"], "--wait")  # fmt: skip
            assert gone.returncode == 0, gone.stderr
    rest = [body for body in bodies if not _is_pre_sync(body)]
    lines: list[str] = []
    for wave in sorted({_sync_wave(body) for body in rest}):
        lines += _apply(kubectl, namespace, [body for body in rest if _sync_wave(body) == wave])
    return lines
