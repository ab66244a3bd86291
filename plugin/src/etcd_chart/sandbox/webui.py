"""The chart's web UI in a sandbox: where to open it, and a login to open it with.

The chart never generates the UI's login Secret (a Secret made at render time would change on every
`helm template`, and under Argo CD on every sync). The sandbox is a place to try things, so when the
built-in UI's login Secret does not exist yet, `up` and `upgrade` create it with the user `admin`
and a random password and print both with the UI's address; a Secret that exists is left alone.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from etcd_chart.sandbox.helmrun import kubectl
from etcd_chart.sandbox.state import StateDir

WEBUI_COMPONENT = "app.kubernetes.io/component=webui"
LOGIN_VOLUME = "login"
SANDBOX_USER = "admin"


@dataclass(frozen=True)
class WebUi:
    deployment: str
    urls: list[str]
    login_secret: str  # "" when the UI has no login
    username_key: str
    password_key: str


def _container_port(deployment: dict[str, Any]) -> int:
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return 8080


def _login_volume(deployment: dict[str, Any]) -> tuple[str, str, str]:
    """(secret, username key, password key) of the built-in UI's login volume, or empties."""
    for volume in deployment["spec"]["template"]["spec"].get("volumes") or []:
        secret = volume.get("secret") or {}
        if volume.get("name") != LOGIN_VOLUME or not secret.get("secretName"):
            continue
        paths = {item.get("path"): item.get("key") for item in secret.get("items") or []}
        return (
            str(secret["secretName"]),
            str(paths.get("username") or "username"),
            str(paths.get("password") or "password"),
        )
    return "", "", ""


def web_uis(state: StateDir, namespace: str, status: dict[str, Any]) -> list[WebUi]:
    """The chart's web UI Deployments in `namespace`, each with the URLs of its pods."""
    result = kubectl(
        state, "-n", namespace, "get", "deployments", "-l", WEBUI_COMPONENT, "-o", "json"
    )
    if result.returncode != 0:
        return []
    found = []
    for deployment in json.loads(result.stdout).get("items") or []:
        name = deployment["metadata"]["name"]
        port = _container_port(deployment)
        urls = [
            f"http://{pod['address']}:{port}/" + ("" if pod.get("ready") else " (not Ready)")
            for pod in status.get("pods") or []
            if pod.get("namespace") == namespace
            and str(pod.get("owner", "")).startswith(f"ReplicaSet/{name}-")
            and pod.get("address")
        ]
        found.append(WebUi(name, urls, *_login_volume(deployment)))
    return found


def ensure_login(state: StateDir, namespace: str, ui: WebUi) -> str | None:
    """Create the UI's login Secret when it does not exist; returns the new password, or None
    when the Secret was there already (or the UI has no login)."""
    if not ui.login_secret:
        return None
    exists = kubectl(state, "-n", namespace, "get", "secret", ui.login_secret, "-o", "name")
    if exists.returncode == 0:
        return None
    password = secrets.token_urlsafe(18)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ui.login_secret, "namespace": namespace},
        "stringData": {ui.username_key: SANDBOX_USER, ui.password_key: password},
    }
    created = kubectl(state, "create", "-f", "-", stdin=json.dumps(secret))
    return password if created.returncode == 0 else None


def describe(state: StateDir, namespace: str, status: dict[str, Any]) -> list[str]:
    """The lines `up` and `upgrade` print about the web UI (none without one)."""
    lines = []
    for ui in web_uis(state, namespace, status):
        where = ", ".join(ui.urls) or "(no pod yet)"
        password = ensure_login(state, namespace, ui)
        if not ui.login_secret:
            lines.append(f"web UI: {where} (no login)")
        elif password is not None:
            lines.append(
                f"web UI: {where} (log in as {SANDBOX_USER} with password {password}: the sandbox "
                f"created Secret {namespace}/{ui.login_secret}; the UI reads it within seconds)"
            )
        else:
            lines.append(
                f"web UI: {where} (log in with the user name and password in Secret "
                f"{namespace}/{ui.login_secret})"
            )
    return lines
