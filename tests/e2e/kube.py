"""Talking to the sandbox's real control plane from the tests: kubectl and raw API calls."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from typing import Any

from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import ControlPlane


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
