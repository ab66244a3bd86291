"""The production values (`chart/ci/secure-values.yaml`) in the sandbox: who gets in, and who not.

One sandbox runs the secure values: TLS for clients and peers with mutual authentication,
certificates from the (local) cert-manager chain the chart renders, etcd RBAC with a root password
and a read-only user from Secrets created beforehand (`--objects`), JWT tokens. An unrelated chain
made with `etcd-chart pki` (same names, another CA, client CN `root`) plays the intruder. Every
refusal is also looked up in etcd's own log, so that a test cannot pass because etcd was merely
unreachable. The last test scales the same cluster from 3 to 5 members. Every test that boots a
TLS cluster runs on each etcd release the tests run.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox
from etcd_versions import etcd_program
from membership import (
    pod_names,
    server_version,
    wait_converged,
    wait_for,
)
from strays import assert_no_stray_processes, subnet_of

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_security")]

ROOT_PASSWORD = "root-password-for-the-test"
WEBUI_PASSWORD = "webui-password-for-the-test"


def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=timeout, check=False
    )


def existing_secrets(work: Path) -> Path:
    """The Secrets secure-values.yaml expects to exist, as its comments say to create them."""
    key, public = work / "jwt.key", work / "jwt.pub"
    assert run("openssl", "genrsa", "-out", str(key), "2048").returncode == 0
    assert run("openssl", "rsa", "-in", str(key), "-pubout", "-out", str(public)).returncode == 0
    objects: list[dict[str, Any]] = [
        secret("etcd-root-password", {"password": ROOT_PASSWORD}),
        secret("etcd-webui-password", {"password": WEBUI_PASSWORD}),
        secret("etcd-jwt", {"jwt.key": key.read_text(), "jwt.pub": public.read_text()}),
    ]
    path = work / "secrets.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, chart_dir: Path, etcd_version: str
) -> Iterator[Sandbox]:
    """The secure release on each etcd release the tests run (its image tag picks it)."""
    work = tmp_path_factory.mktemp("secure")
    sb = Sandbox(work / "state")
    try:
        sb.up(
            str(chart_dir),
            "-f",
            str(chart_dir / "ci" / "secure-values.yaml"),
            "--set",
            f"image.tag=v{etcd_version}",
            "--objects",
            str(existing_secrets(work)),
            timeout=240,
        )
        wait_converged(sb, 3)
        assert server_version(sb, "etcd-0") == etcd_version
        yield sb
    finally:
        subnet = subnet_of(sb.state_dir)
        sb.down(purge=True)
        assert_no_stray_processes(sb.state_dir, subnet)


@pytest.fixture(scope="module")
def intruder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates for the same names and client CN `root`, from an unrelated CA."""
    out = tmp_path_factory.mktemp("intruder")
    result = run(sys.executable, "-m", "etcd_chart.cli", "pki", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def pod(sb: Sandbox, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in sb.status()["pods"] if p["name"] == name)
    return found


def server_name(entry: dict[str, Any]) -> str:
    return str(entry["dns_name"])


def log_size(sb: Sandbox, name: str) -> int:
    return len(sb.logs(name))


def rejections(sb: Sandbox, name: str, offset: int, endpoint: str) -> list[str]:
    """Errors of connections etcd rejected on its `client` or `peer` endpoint since `offset`."""
    found = []
    for line in sb.logs(name)[offset:].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == f"rejected connection on {endpoint} endpoint":
            found.append(str(entry.get("error", "")))
    return found


def https_get(
    entry: dict[str, Any], ca: str, cert: tuple[str, str] | None, port: int = 2379
) -> str:
    """GET /version over TLS at the pod's address; the status line, or the error's name."""
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(*cert)
    try:
        with (
            socket.create_connection((entry["address"], port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name(entry)) as conn,
        ):
            request = f"GET /version HTTP/1.1\r\nHost: {server_name(entry)}\r\n"
            conn.sendall((request + "Connection: close\r\n\r\n").encode())
            reply = conn.recv(4096).decode(errors="replace")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as err:
        return type(err).__name__
    return reply.split("\r\n", 1)[0] if reply else "closed without a reply"


def etcdctl(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return sb.etcdctl("etcd-0", "--command-timeout=5s", *args)


def test_the_chart_client_certificate_gets_in(secure: Sandbox) -> None:
    entry = pod(secure, "etcd-0")
    tls = entry["tls"]
    assert entry["client_url"].startswith("https://")
    assert https_get(entry, tls["ca"], (tls["cert"], tls["key"])) == "HTTP/1.1 200 OK"
    result = etcdctl(secure, "put", "/secure/greeting", "hello")
    assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr
    result = secure.etcdctl("etcd-2", "get", "/secure/greeting", "--print-value-only")
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr


def test_no_client_certificate_is_refused(secure: Sandbox) -> None:
    entry = pod(secure, "etcd-1")
    offset = log_size(secure, "etcd-1")
    assert https_get(entry, entry["tls"]["ca"], None) != "HTTP/1.1 200 OK"
    time.sleep(0.5)
    errors = rejections(secure, "etcd-1", offset, "client")
    assert errors and all("certificate" in e for e in errors), errors


def test_a_certificate_from_another_ca_is_refused(secure: Sandbox, intruder: Path) -> None:
    entry = pod(secure, "etcd-1")
    offset = log_size(secure, "etcd-1")
    cert = (str(intruder / "client.crt"), str(intruder / "client.key"))
    assert https_get(entry, entry["tls"]["ca"], cert) != "HTTP/1.1 200 OK"
    time.sleep(0.5)
    errors = rejections(secure, "etcd-1", offset, "client")
    assert errors and all("unknown authority" in e for e in errors), errors


def test_plain_http_is_refused(secure: Sandbox) -> None:
    entry = pod(secure, "etcd-0")
    offset = log_size(secure, "etcd-0")
    with socket.create_connection((entry["address"], 2379), timeout=5) as conn:
        conn.sendall(b"GET /version HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        reply = conn.recv(4096)
    assert reply == b"", "etcd answered plain HTTP on its TLS client port"
    time.sleep(0.5)
    errors = rejections(secure, "etcd-0", offset, "client")
    assert errors and all("does not look like a TLS handshake" in e for e in errors), errors


def test_a_peer_with_a_certificate_from_another_ca_cannot_join(
    secure: Sandbox, intruder: Path, etcd_version: str, tmp_path: Path
) -> None:
    """A real etcd with the intruder's peer certificate tries to join as etcd-5."""
    status = secure.status()
    subnet = status["subnet"]
    hosts = Path(status["state_dir"]) / "hosts"
    name = "etcd-5"
    domain = "etcd-headless.default.svc.cluster.local"
    address = f"{subnet}.77"
    (tmp_path / "hosts").write_text(hosts.read_text() + f"{address} {name}.{domain}\n")
    peers = ",".join(f"etcd-{i}=https://etcd-{i}.{domain}:2380" for i in range(3))
    command = [
        etcd_program(etcd_version, "etcd"),
        f"--name={name}",
        f"--data-dir={tmp_path / 'data'}",
        f"--listen-peer-urls=https://{address}:2380",
        f"--listen-client-urls=https://{address}:2379",
        f"--advertise-client-urls=https://{name}.{domain}:2379",
        f"--initial-advertise-peer-urls=https://{name}.{domain}:2380",
        f"--initial-cluster={peers},{name}=https://{name}.{domain}:2380",
        "--initial-cluster-state=existing",
        f"--peer-cert-file={intruder / 'peer.crt'}",
        f"--peer-key-file={intruder / 'peer.key'}",
        # It trusts our CA (a CA certificate is no secret), so only its own certificate fails.
        f"--peer-trusted-ca-file={pod(secure, 'etcd-0')['tls']['ca']}",
        "--peer-client-cert-auth",
        f"--cert-file={intruder / 'server.crt'}",
        f"--key-file={intruder / 'server.key'}",
    ]
    offsets = {p: log_size(secure, p) for p in pod_names(3)}
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    result = run(
        "unshare", "-m", "--propagation", "private", "sh", "-c", script,
        str(tmp_path / "hosts"), *command, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "could not retrieve cluster information from the given URLs" in result.stderr
    refused = [e for p in pod_names(3) for e in rejections(secure, p, offsets[p], "peer")]
    assert refused and all("unknown authority" in e for e in refused), refused
    listed = etcdctl(secure, "member", "list", "-w", "json")
    assert sorted(m["name"] for m in json.loads(listed.stdout)["members"]) == pod_names(3)


def test_rbac_root_with_its_password_and_a_read_only_user(secure: Sandbox) -> None:
    status = etcdctl(secure, "auth", "status")
    assert status.stdout.startswith("Authentication Status: true"), status.stdout + status.stderr
    root = f"--user=root:{ROOT_PASSWORD}"
    assert etcdctl(secure, root, "put", "/rbac/by-root", "yes").stdout == "OK\n"
    assert etcdctl(secure, root, "user", "list").stdout.split() == ["root", "webui"]
    webui = f"--user=webui:{WEBUI_PASSWORD}"
    read = etcdctl(secure, webui, "get", "/rbac/by-root", "--print-value-only")
    assert (read.returncode, read.stdout) == (0, "yes\n"), read.stderr
    write = etcdctl(secure, webui, "put", "/rbac/by-webui", "no")
    assert write.returncode != 0
    assert "permission denied" in write.stderr
    wrong = etcdctl(secure, "--user=root:not-the-password", "get", "/rbac/by-root")
    assert wrong.returncode != 0
    assert "authentication failed" in wrong.stderr
    absent = etcdctl(secure, root, "get", "/rbac/by-webui", "--print-value-only")
    assert (absent.returncode, absent.stdout) == (0, "")


def test_scaling_to_5_needs_no_new_certificate(
    secure: Sandbox, chart_dir: Path, etcd_version: str
) -> None:
    def certificates() -> dict[str, bytes]:
        found = {}
        for entry in secure.status()["pods"]:
            base = Path(entry["tls"]["cert"]).parents[1] if entry.get("tls") else None
            if base is None or not entry["name"].startswith("etcd-"):
                continue
            for role in ("tls-server", "tls-peer"):
                found[f"{entry['name']}/{role}"] = (base / role / "tls.crt").read_bytes()
        return found

    before = certificates()
    assert etcdctl(secure, "put", "/secure/before-scaling", "kept").stdout == "OK\n"
    secure.upgrade(
        str(chart_dir),
        "-f",
        str(chart_dir / "ci" / "secure-values.yaml"),
        "--set",
        f"image.tag=v{etcd_version}",
        "--set",
        "replicas=5",
        timeout=240,
    )
    wait_converged(secure, 5)
    after = certificates()
    for role in ("tls-server", "tls-peer"):
        issued = {value for key, value in after.items() if key.endswith(role)}
        assert issued == {before[f"etcd-0/{role}"]}, f"{role}: a new certificate was issued"
    result = secure.etcdctl("etcd-4", "get", "/secure/before-scaling", "--print-value-only")
    assert (result.returncode, result.stdout) == (0, "kept\n"), result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--set", "tls.enabled=true", "--set", "tls.source=existingSecrets"],
            1,
            "tls.existingSecrets.server: required with tls.source=existingSecrets. Name the "
            "Secret holding tls.crt, tls.key and ca.crt (`etcd-chart pki` makes them), or use "
            "tls.source=cert-manager.",
        ),
        (
            ["--set", "tls.enabled=true", "--set", "tls.certManager.issuerRef.name=corp-ca"]
            + ["--set", "tls.certManager.issuerRef.kind=Bogus"],
            1,
            "at '/tls/certManager/issuerRef/kind': value must be one of 'Issuer', 'ClusterIssuer'",
        ),
        (
            ["--set", "tls.enabled=true", "--set", "tls.certManager.issuerRef.name=corp-ca"]
            + ["--set", "tls.certManager.issuerRef.kind=ClusterIssuer"],
            1,
            "Certificate/etcd-server: spec.issuerRef.name: ClusterIssuer 'corp-ca' does not "
            "exist, in the release or the cluster, so cert-manager would never issue Secret "
            "etcd-server-tls and the pods that mount it would stay Pending (add the "
            "ClusterIssuer to the release or point issuerRef at one that exists)",
        ),
    ],
    ids=["no-certificate-source", "issuer-kind-unknown", "issuer-missing"],
)
def test_bad_tls_input_stops_before_anything_runs(
    chart_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    state = tmp_path / "state"
    result = Sandbox(state).up(str(chart_dir), *args, check=False, timeout=60)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert message in result.stderr
    assert "up failed; stopped everything" in result.stderr
    assert_no_stray_processes(state, subnet_of(state))


def pki_secrets(out: Path) -> list[dict[str, Any]]:
    """The Secrets `etcd-chart pki --format secrets` writes for release `etcd` in `default`."""
    command = [sys.executable, "-m", "etcd_chart.cli", "pki", "--out", str(out)]
    result = run(*command, "--format", "secrets")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all((out / "secrets.yaml").read_text()) if d]


def named(secrets: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(s for s in secrets if s["metadata"]["name"] == name)


def boot_with_existing_secrets(
    chart_dir: Path, tmp_path: Path, secrets: list[dict[str, Any]], *extra: str
) -> tuple[Sandbox, subprocess.CompletedProcess[str]]:
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all(secrets))
    sb = Sandbox(tmp_path / "state")
    values = str(chart_dir / "ci" / "existing-secrets-values.yaml")
    result = sb.up(str(chart_dir), "-f", values, "--objects", str(objects), *extra, check=False)
    return sb, result


def test_certificates_from_etcd_chart_pki_boot_a_cluster(
    chart_dir: Path, tmp_path: Path, etcd_version: str
) -> None:
    sb, result = boot_with_existing_secrets(
        chart_dir,
        tmp_path,
        pki_secrets(tmp_path / "pki"),
        "--set",
        f"image.tag=v{etcd_version}",
    )
    try:
        assert result.returncode == 0, result.stderr
        wait_converged(sb, 3)
        assert server_version(sb, "etcd-0") == etcd_version
        put = sb.etcdctl("etcd-0", "put", "/pki/greeting", "hello")
        assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
        assert pod(sb, "etcd-2")["client_url"].startswith("https://")
    finally:
        subnet = subnet_of(sb.state_dir)
        sb.down(purge=True)
        assert_no_stray_processes(sb.state_dir, subnet)


def test_a_secret_missing_a_key_stops_the_render(chart_dir: Path, tmp_path: Path) -> None:
    secrets = pki_secrets(tmp_path / "pki")
    del named(secrets, "etcd-server-tls")["data"]["ca.crt"]
    sb, result = boot_with_existing_secrets(chart_dir, tmp_path, secrets)
    assert result.returncode == 1, result.stderr
    assert "Secret etcd-server-tls has no key ca.crt" in result.stderr
    # Helm 4 says only that the plugin failed; the sandbox adds what the post-renderer said.
    assert 'failed to invoke post-renderer plugin "etcd-chart"' in result.stderr
    assert_no_stray_processes(sb.state_dir, subnet_of(sb.state_dir))


def test_a_ca_that_does_not_match_stops_the_render(chart_dir: Path, tmp_path: Path) -> None:
    secrets = pki_secrets(tmp_path / "pki")
    foreign = pki_secrets(tmp_path / "other-pki")
    secrets = [s for s in secrets if s["metadata"]["name"] != "etcd-peer-tls"]
    secrets.append(named(foreign, "etcd-peer-tls"))
    sb, result = boot_with_existing_secrets(chart_dir, tmp_path, secrets)
    assert result.returncode == 1, result.stderr
    assert "Secret etcd-peer-tls is signed by another CA" in result.stderr
    assert_no_stray_processes(sb.state_dir, subnet_of(sb.state_dir))


def served_certificate(entry: dict[str, Any], port: int = 2379) -> bytes:
    """The DER certificate the member presents on a new TLS connection now."""
    tls = entry["tls"]
    context = ssl.create_default_context(cafile=tls["ca"])
    context.load_cert_chain(tls["cert"], tls["key"])
    with (
        socket.create_connection((entry["address"], port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name(entry)) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def kubectl(sb: Sandbox, *args: str) -> str:
    result = run(find_tool("kubectl"), f"--kubeconfig={sb.state_dir / 'kubeconfig'}", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


class EtcdctlWriter:
    """Writes `/renewal/<n>` through etcdctl in the members' pods, in turn, recording each
    acknowledged write. (The JSON gateway is closed to clients with a certificate when client
    certificate authentication is on, so the gRPC path it is.)"""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.acknowledged: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EtcdctlWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        sequence = 0
        while not self._stop.is_set():
            sequence += 1
            member = pod_names(3)[sequence % 3]
            result = self.sb.etcdctl(
                member, "--command-timeout=5s", "put", f"/renewal/{sequence:06d}", str(sequence)
            )
            if result.returncode == 0 and result.stdout == "OK\n":
                self.acknowledged.append(sequence)
            else:
                self.failures.append(result.stderr.strip())

    def missing(self, member: str) -> list[int]:
        result = self.sb.etcdctl(member, "get", "--prefix", "/renewal/")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        stored = dict(zip(lines[0::2], lines[1::2], strict=True))
        return [n for n in self.acknowledged if stored.get(f"/renewal/{n:06d}") != str(n)]


def test_a_renewed_server_certificate_is_served_without_a_lost_write(secure: Sandbox) -> None:
    """cert-manager renews the server certificate (triggered as `cmctl renew` does, with the
    Issuing condition); the kubelet refreshes the Secret volume and etcd serves the new
    certificate on the next connection, with no restart and no lost write."""
    before = {name: served_certificate(pod(secure, name)) for name in pod_names(3)}
    restarts = {name: pod(secure, name)["restarts"] for name in pod_names(3)}
    secret_name = kubectl(
        secure, "get", "certificate", "etcd-server", "-o", "jsonpath={.spec.secretName}"
    )
    old_secret = kubectl(secure, "get", "secret", secret_name, "-o", "jsonpath={.data.tls\\.crt}")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    issuing = {
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "renewal triggered by the test",
        "lastTransitionTime": now,
    }
    with EtcdctlWriter(secure) as writer:
        wait_for(lambda: len(writer.acknowledged) >= 3, "the writer's first writes")
        kubectl(
            secure, "patch", "certificate", "etcd-server", "--subresource=status", "--type=json",
            "-p", json.dumps([{"op": "add", "path": "/status/conditions/-", "value": issuing}]),
        )  # fmt: skip
        wait_for(
            lambda: (
                kubectl(secure, "get", "secret", secret_name, "-o", "jsonpath={.data.tls\\.crt}")
                != old_secret
            ),
            "cert-manager to renew the server certificate",
        )
        wait_for(
            lambda: all(served_certificate(pod(secure, n)) != before[n] for n in pod_names(3)),
            "every member to serve the renewed certificate",
        )
        renewed = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) >= renewed + 3, "writes after the renewal")
    assert {name: pod(secure, name)["restarts"] for name in pod_names(3)} == restarts
    for member in pod_names(3):
        assert writer.missing(member) == [], f"acknowledged writes missing on {member}"


def test_a_role_change_by_helm_upgrade_reaches_etcd_without_restarting_a_member(
    secure: Sandbox, chart_dir: Path, etcd_version: str, tmp_path: Path
) -> None:
    """Issue 13, trap 5: users and roles are not in the pod template, so `helm upgrade` that
    grants the web UI's role more leaves the StatefulSet's revision and every pod as they were;
    the kubelet refreshes auth.json in the pods and the member agents apply it."""

    def pods() -> dict[str, tuple[str, int]]:
        """uid and restart count of every member pod."""
        found = {}
        for entry in secure.status()["pods"]:
            if entry["owner"] == "StatefulSet/etcd":
                uid = kubectl(secure, "get", "pod", entry["name"], "-o", "jsonpath={.metadata.uid}")
                found[entry["name"]] = (uid, int(entry["restarts"]))
        return found

    def revision() -> str:
        return kubectl(
            secure, "get", "statefulset", "etcd", "-o", "jsonpath={.status.updateRevision}"
        )

    webui = f"--user=webui:{WEBUI_PASSWORD}"
    denied = etcdctl(secure, webui, "put", "/webui-notes/a", "1")
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied.stderr
    before, revision_before = pods(), revision()
    replicas = len(before)  # 5 after test_scaling_to_5_needs_no_new_certificate, 3 on its own
    granted = [
        {"type": "read", "key": "/", "prefix": True},
        {"type": "readwrite", "key": "/webui-notes/", "prefix": True},
    ]
    more = tmp_path / "roles-values.yaml"
    more.write_text(yaml.safe_dump({"auth": {"rbac": {"roles": [
        {"name": "read-only", "permissions": granted}]}}}))  # fmt: skip
    secure.upgrade(
        str(chart_dir),
        "-f",
        str(chart_dir / "ci" / "secure-values.yaml"),
        "-f",
        str(more),
        "--set",
        f"image.tag=v{etcd_version},replicas={replicas}",
        timeout=240,
    )
    wait_for(
        lambda: etcdctl(secure, webui, "put", "/webui-notes/a", "1").returncode == 0,
        "the member agents to grant the role its new permission",
        timeout=90,
    )
    assert revision() == revision_before
    assert pods() == before
    outside = etcdctl(secure, webui, "put", "/elsewhere", "1")
    assert outside.returncode != 0 and "permission denied" in outside.stderr
