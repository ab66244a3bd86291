"""Talking to a real control plane from the tests: kubectl and raw API calls, on the shared
control plane fixture or on a sandbox's own."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from etcd_chart.helm import find_tool
from etcd_chart.sandbox import helmrun
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.controlplane import ControlPlane
from etcd_chart.sandbox.state import StateDir


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [find_tool("kubectl"), f"--kubeconfig={plane.admin_kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def api(
    plane: ControlPlane, token: str, method: str, path: str, body: dict[str, Any] | None = None
) -> int:
    """The HTTP status the API server answers to `method path` with this bearer token."""
    context = ssl.create_default_context(cafile=str(plane.pki.ca))
    request = urllib.request.Request(
        plane.server + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


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
