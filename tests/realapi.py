"""The tests' real API server: one control plane per test process (the `control_plane` fixture in
tests/conftest.py), each test in namespaces of its own, reached with kubectl, raw requests, or a
kubeconfig of its own (admin, or a ServiceAccount's token)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import ControlPlane

_NAMES = itertools.count()


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


def new_namespace(plane: ControlPlane, prefix: str = "t") -> str:
    """A namespace no other test of this run uses (names are unique per process and per worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    name = f"{prefix}-{worker}-{os.getpid()}-{next(_NAMES)}"[:63]
    kubectl(plane, "create", "namespace", name)
    # The ServiceAccount admission refuses pods until the controller manager has made the
    # namespace's `default` ServiceAccount, a moment after the namespace.
    deadline = time.monotonic() + 30
    while not kubectl(plane, "-n", name, "get", "serviceaccounts", "-o", "name").strip():
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name} after 30 s"
        time.sleep(0.1)
    return name


def delete_namespace(plane: ControlPlane, name: str) -> None:
    """Deletion starts and the test goes on; the namespace controller finishes it."""
    kubectl(plane, "delete", "namespace", name, "--wait=false", "--ignore-not-found")


def service_account_token(plane: ControlPlane, namespace: str, account: str) -> str:
    """A bound token of `account` (created if missing) through TokenRequest, an hour long."""
    apply(
        plane,
        namespace,
        [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}],
    )
    return kubectl(plane, "-n", namespace, "create", "token", account, "--duration=1h").strip()


def write_kubeconfig(
    plane: ControlPlane,
    path: Path,
    namespace: str,
    token: str | None = None,
    context: str = "test",
) -> Path:
    """A kubeconfig for the plane whose context namespace is `namespace`, as the admin (client
    certificate) or, given a token, as that bearer."""
    pki = plane.pki
    user: dict[str, Any] = (
        {"token": token}
        if token
        else {
            "client-certificate": str(pki.path("admin.crt")),
            "client-key": str(pki.path("admin.key")),
        }
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": plane.server, "certificate-authority": str(pki.ca)},
            }
        ],
        "users": [{"name": context, "user": user}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def apply(plane: ControlPlane, namespace: str, objects: list[dict[str, Any]]) -> None:
    """Create or update `objects` in `namespace` as the admin (server-side apply)."""
    stream = "\n---\n".join(json.dumps(obj) for obj in objects)
    kubectl(plane, "-n", namespace, "apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=stream)  # fmt: skip


def put_cluster_record(
    plane: ControlPlane, namespace: str, created: str = "2026-01-01T00:00:00Z"
) -> None:
    """The cluster record of release `etcd`, as the member agent writes it once the cluster
    exists: what tells the post-renderer a cluster was created in `namespace`."""
    record = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "etcd-cluster-record"}}
    apply(plane, namespace, [{**record, "data": {"created": created}}])


def write_contexts(
    plane: ControlPlane,
    path: Path,
    namespace: str,
    users: dict[str, str | None],
    current: str,
    servers: dict[str, str] | None = None,
) -> Path:
    """A kubeconfig of several contexts, all with context namespace `namespace`: one per entry of
    `users` (context, cluster and user of that name), as the admin (None) or that token's bearer,
    on the plane unless `servers` points the context elsewhere."""
    pki = plane.pki
    admin = {
        "client-certificate": str(pki.path("admin.crt")),
        "client-key": str(pki.path("admin.key")),
    }
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": current,
    }
    for name, token in users.items():
        server = (servers or {}).get(name, plane.server)
        cluster = {"server": server, "certificate-authority": str(pki.ca)}
        config["clusters"].append({"name": name, "cluster": cluster})
        config["users"].append({"name": name, "user": {"token": token} if token else admin})
        context = {"cluster": name, "user": name, "namespace": namespace}
        config["contexts"].append({"name": name, "context": context})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def unused_server(plane: ControlPlane) -> str:
    """An https URL on the plane's address where nothing listens (a port the kernel just freed)."""
    with socket.socket() as probe:
        probe.bind((plane.address, 0))
        port = probe.getsockname()[1]
    return f"https://{plane.address}:{port}"
