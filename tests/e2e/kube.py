"""Talking to a sandbox's control plane from the tests: kubectl in the release's namespace and the
objects it shows (the shared control plane's helpers are in tests/realapi.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etcd_chart.sandbox import helmrun
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.state import StateDir


def sandbox_kubectl(sb: Sandbox, *args: str) -> str:
    """`kubectl` against a sandbox's control plane, in its release's namespace."""
    namespace = sb.status()["release"]["namespace"]
    result = helmrun.kubectl(StateDir(sb.state_dir), "-n", namespace, *args)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def sandbox_json(sb: Sandbox, *args: str) -> Any:
    """The object(s) as JSON; None for nothing (`--ignore-not-found` prints nothing)."""
    text = sandbox_kubectl(sb, *args, "-o", "json")
    return json.loads(text) if text.strip() else None


def claim_directory(sb: Sandbox, claim: str) -> Path | None:
    """The local directory behind a bound claim of the sandbox's release, None while unbound."""
    pvc = sandbox_json(sb, "get", "pvc", claim, "--ignore-not-found")
    volume = (pvc or {}).get("spec", {}).get("volumeName")
    if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
        return None
    pv = sandbox_json(sb, "get", "pv", volume)
    return Path(pv["spec"]["local"]["path"])


def deployed_revision(sb: Sandbox, release: str = "etcd") -> int:
    """The revision Helm last marked deployed: Helm marks it once the hooks before an upgrade
    have passed and the manifests are applied (the sandbox runs Helm without --wait)."""
    secrets = sandbox_json(sb, "get", "secrets", "-l", f"owner=helm,name={release},status=deployed")
    return max((int(s["metadata"]["labels"]["version"]) for s in secrets["items"]), default=0)
