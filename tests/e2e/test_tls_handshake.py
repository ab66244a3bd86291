"""Certificates from cert-manager secure a real etcd: mutual TLS holds.

The objects are what the chart renders for `tls.enabled` (a self-signed Issuer signs a CA
Certificate, a CA Issuer made from it signs the server, peer and client Certificates), checked
against cert-manager's CRD schemas and issued by the real cert-manager of the `control_plane`
fixture, each chain in a namespace of its own. A second, unrelated chain stands for an
intruder. One etcd process serves clients on 127.0.0.1 with `client-cert-auth`; `etcdctl` shows
who gets in. Each refusal is also found, with its reason, in etcd's own log, so a test cannot
pass because etcd was merely unreachable.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import apply, delete_namespace, kubectl, new_namespace

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_tls_handshake")]

RELEASE = "etcd"
MAX_MEMBERS = 3
DIAL = ("--dial-timeout=1s", "--command-timeout=2s")


def chart_like_objects(namespace: str, fullname: str) -> list[dict[str, Any]]:
    """Issuers and Certificates shaped like the chart's `issuer-*.yaml`, `certificate-*.yaml`."""

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": namespace}

    headless = f"{fullname}-headless"
    members = []
    for ordinal in range(MAX_MEMBERS):
        pod = f"{fullname}-{ordinal}"
        members += [
            pod,
            f"{pod}.{headless}",
            f"{pod}.{headless}.{namespace}",
            f"{pod}.{headless}.{namespace}.svc",
            f"{pod}.{headless}.{namespace}.svc.cluster.local",
        ]
    services = [
        f"{fullname}",
        f"{fullname}.{namespace}",
        f"{fullname}.{namespace}.svc",
        f"{fullname}.{namespace}.svc.cluster.local",
    ]
    key = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    leaf_usages = ["server auth", "client auth", "digital signature", "key encipherment"]
    ca_issuer = {"name": f"{fullname}-ca", "kind": "Issuer", "group": "cert-manager.io"}

    def leaf(role: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": meta(f"{fullname}-{role}"),
            "spec": {
                "secretName": f"{fullname}-{role}-tls",
                "duration": "2160h",
                "renewBefore": "360h",
                "privateKey": key,
                "issuerRef": ca_issuer,
                **spec,
            },
        }

    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": meta(f"{fullname}-selfsigned"),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": meta(f"{fullname}-ca"),
            "spec": {
                "secretName": f"{fullname}-ca",
                "isCA": True,
                "commonName": f"{fullname}-ca",
                "duration": "87600h",
                "renewBefore": "720h",
                "privateKey": key,
                "issuerRef": {"name": f"{fullname}-selfsigned", "kind": "Issuer"},
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": meta(f"{fullname}-ca"),
            "spec": {"ca": {"secretName": f"{fullname}-ca"}},
        },
        leaf(
            "server",
            {
                "commonName": f"{fullname}-server",
                "usages": leaf_usages,
                "dnsNames": [*members, *services, "localhost"],
                "ipAddresses": ["127.0.0.1"],
            },
        ),
        leaf(
            "peer", {"commonName": f"{fullname}-peer", "usages": leaf_usages, "dnsNames": members}
        ),
        leaf(
            "client",
            {
                "commonName": "root",
                "usages": ["client auth", "digital signature", "key encipherment"],
            },
        ),
    ]


def validate_against_crds(objects: list[dict[str, Any]], shared_dir: Path) -> None:
    for obj in objects:
        path = shared_dir / "crd-schemas" / f"cert-manager.io_v1_{obj['kind']}.json"
        validator = jsonschema.Draft7Validator(json.loads(path.read_text()))
        errors = [error.message for error in validator.iter_errors(obj)]
        assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


def issued(plane: ControlPlane, namespace: str, name: str, timeout: float = 90) -> dict[str, bytes]:
    """The data of Secret `name` once cert-manager has written the certificate into it."""
    deadline = time.monotonic() + timeout
    while True:
        found = kubectl(plane, "-n", namespace, "get", "secrets", "-o", "json")
        for item in json.loads(found)["items"]:
            data = item.get("data") or {}
            if item["metadata"]["name"] == name and {"tls.crt", "tls.key", "ca.crt"} <= set(data):
                return {key: base64.b64decode(value) for key, value in data.items()}
        if time.monotonic() > deadline:
            certificates = kubectl(plane, "-n", namespace, "get", "certificates", "-o", "yaml")
            pytest.fail(f"cert-manager did not issue {namespace}/{name}:\n{certificates}")
        time.sleep(0.5)


def write_secrets(plane: ControlPlane, namespace: str, fullname: str, into: Path) -> None:
    """The Secrets as the pods mount them: /etc/etcd/tls/{server,peer,client}/{tls.crt,...}."""
    for role in ("server", "peer", "client"):
        directory = into / role
        directory.mkdir(parents=True)
        for key, value in issued(plane, namespace, f"{fullname}-{role}-tls").items():
            (directory / key).write_bytes(value)
            (directory / key).chmod(0o600)


@pytest.fixture(scope="module")
def tls_dir(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path, control_plane: ControlPlane
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tls")
    ours, theirs = new_namespace(control_plane, "tls"), new_namespace(control_plane, "intruder")
    try:
        # Same names in both, each chain from its own self-signed CA.
        for namespace in (ours, theirs):
            objects = chart_like_objects(namespace, RELEASE)
            validate_against_crds(objects, shared_dir)
            apply(control_plane, namespace, objects)
        write_secrets(control_plane, ours, RELEASE, root / "tls")
        write_secrets(control_plane, theirs, RELEASE, root / "intruder")
        yield root
    finally:
        for namespace in (ours, theirs):
            delete_namespace(control_plane, namespace)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Etcd:
    client_port: int
    log: Path

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def rejections(self, offset: int) -> list[str]:
        """The `error` of every client connection etcd rejected since byte `offset` of its log."""
        found = []
        with self.log.open("rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "rejected connection on client endpoint":
                    found.append(str(entry.get("error", "")))
        return found


@pytest.fixture(scope="module")
def etcd(etcd_bin: str, tls_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    client_port, peer_port, metrics_port = free_ports(3)
    work = tmp_path_factory.mktemp("etcd")
    tls = tls_dir / "tls"
    peer_url = f"https://127.0.0.1:{peer_port}"
    command = [
        etcd_bin,
        "--name", f"{RELEASE}-0",
        "--data-dir", str(work / "data"),
        "--listen-client-urls", f"https://127.0.0.1:{client_port}",
        "--advertise-client-urls", f"https://127.0.0.1:{client_port}",
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{RELEASE}-0={peer_url}",
        "--initial-cluster-state", "new",
        "--listen-metrics-urls", f"http://127.0.0.1:{metrics_port}",
        "--client-cert-auth",
        "--cert-file", str(tls / "server" / "tls.crt"),
        "--key-file", str(tls / "server" / "tls.key"),
        "--trusted-ca-file", str(tls / "server" / "ca.crt"),
        "--peer-client-cert-auth",
        "--peer-cert-file", str(tls / "peer" / "tls.crt"),
        "--peer-key-file", str(tls / "peer" / "tls.key"),
        "--peer-trusted-ca-file", str(tls / "peer" / "ca.crt"),
    ]  # fmt: skip
    log = work / "etcd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"etcd exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{metrics_port}/health"
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if json.loads(response.read()).get("health") == "true":
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not become healthy in 60s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Etcd(client_port=client_port, log=log)
    finally:
        stop()


def etcdctl(
    etcdctl_bin: str, endpoint: str, *args: str, tls: Path | None = None, ca: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """etcdctl against `endpoint`; `tls` is a directory with tls.crt/tls.key, `ca` the CA file."""
    command = [etcdctl_bin, f"--endpoints={endpoint}", *DIAL]
    if ca is not None:
        command.append(f"--cacert={ca}")
    if tls is not None:
        command += [f"--cert={tls / 'tls.crt'}", f"--key={tls / 'tls.key'}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETCDCTL_")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def wait_for_rejections(server: Etcd, offset: int) -> list[str]:
    """etcd logs a rejection when the handshake fails; give the log a moment to be written."""
    deadline = time.monotonic() + 10
    while True:
        found = server.rejections(offset)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == "Error: context deadline exceeded"


@pytest.fixture(scope="module")
def greeting(etcd: Etcd, tls_dir: Path, etcdctl_bin: str) -> str:
    tls = tls_dir / "tls" / "client"
    put = etcdctl(etcdctl_bin, etcd.https, "put", "greeting", "hello", tls=tls, ca=tls / "ca.crt")
    assert (put.returncode, put.stdout, put.stderr) == (0, "OK\n", "")
    return "hello"


def read_greeting(etcd: Etcd, tls_dir: Path, etcdctl_bin: str) -> str:
    tls = tls_dir / "tls" / "client"
    result = etcdctl(
        etcdctl_bin, etcd.https, "get", "greeting", "--print-value-only", tls=tls, ca=tls / "ca.crt"
    )
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


def test_the_client_certificate_from_the_chart_ca_gets_in(
    etcd: Etcd, tls_dir: Path, etcdctl_bin: str, greeting: str
) -> None:
    tls = tls_dir / "tls" / "client"
    result = etcdctl(etcdctl_bin, etcd.https, "get", "greeting", tls=tls, ca=tls / "ca.crt")
    assert (result.returncode, result.stdout, result.stderr) == (0, "greeting\nhello\n", "")
    status = etcdctl(
        etcdctl_bin, etcd.https, "member", "list", "-w", "json", tls=tls, ca=tls / "ca.crt"
    )
    assert status.returncode == 0, status.stderr
    members = json.loads(status.stdout)["members"]
    assert [(m["name"], m["clientURLs"]) for m in members] == [(f"{RELEASE}-0", [etcd.https])]


def test_no_client_certificate_is_refused(
    etcd: Etcd, tls_dir: Path, etcdctl_bin: str, greeting: str
) -> None:
    offset = etcd.log.stat().st_size
    ca = tls_dir / "tls" / "client" / "ca.crt"
    result = etcdctl(etcdctl_bin, etcd.https, "put", "greeting", "intruder", ca=ca)
    assert_refused(result)
    rejections = wait_for_rejections(etcd, offset)
    assert rejections != []
    assert set(rejections) == {"tls: client didn't provide a certificate"}
    assert read_greeting(etcd, tls_dir, etcdctl_bin) == "hello\n"


def test_a_certificate_from_another_ca_is_refused(
    etcd: Etcd, tls_dir: Path, etcdctl_bin: str, greeting: str
) -> None:
    offset = etcd.log.stat().st_size
    ca = tls_dir / "tls" / "client" / "ca.crt"  # the intruder trusts our server...
    stranger = tls_dir / "intruder" / "client"  # ...but its own CN=root certificate is foreign
    result = etcdctl(etcdctl_bin, etcd.https, "put", "greeting", "intruder", tls=stranger, ca=ca)
    assert_refused(result)
    rejections = wait_for_rejections(etcd, offset)
    assert rejections != []
    assert all(
        error.startswith(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        )
        for error in rejections
    ), rejections
    assert read_greeting(etcd, tls_dir, etcdctl_bin) == "hello\n"


def test_a_server_not_signed_by_the_trusted_ca_is_refused_by_the_client(
    etcd: Etcd, tls_dir: Path, etcdctl_bin: str, greeting: str
) -> None:
    offset = etcd.log.stat().st_size
    ours = tls_dir / "tls" / "client"
    result = etcdctl(
        etcdctl_bin,
        etcd.https,
        "get",
        "greeting",
        tls=ours,
        ca=tls_dir / "intruder" / "client" / "ca.crt",
    )
    assert_refused(result)
    assert "x509: certificate signed by unknown authority" in result.stderr
    assert set(wait_for_rejections(etcd, offset)) == {"remote error: tls: bad certificate"}


def test_plain_http_is_refused(etcd: Etcd, tls_dir: Path, etcdctl_bin: str, greeting: str) -> None:
    offset = etcd.log.stat().st_size
    result = etcdctl(etcdctl_bin, f"http://127.0.0.1:{etcd.client_port}", "get", "greeting")
    assert_refused(result)
    rejections = wait_for_rejections(etcd, offset)
    assert rejections != []
    assert set(rejections) == {"tls: first record does not look like a TLS handshake"}

    connection = http.client.HTTPConnection("127.0.0.1", etcd.client_port, timeout=5)
    try:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            connection.request("GET", "/health")
            connection.getresponse()
    finally:
        connection.close()
    assert read_greeting(etcd, tls_dir, etcdctl_bin) == "hello\n"
