"""`etcd-chart pki`: certificates for clusters without cert-manager, run in-process."""

from __future__ import annotations

import base64
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509 as cx509
from cryptography.x509 import verification
from etcd_chart import cli, pki, x509

FILES = (
    "agent.crt",
    "agent.key",
    "ca.crt",
    "ca.key",
    "client.crt",
    "client.key",
    "peer.crt",
    "peer.key",
    "server.crt",
    "server.key",
)
LEAVES = ("server", "peer", "client", "agent")
AGENT_URI = "spiffe://cluster.local/ns/default/member-agent/etcd"


def run_pki(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["pki", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.iterdir())
    }


def cert(directory: Path, name: str) -> cx509.Certificate:
    return x509.load_cert((directory / name).read_bytes())


def member_names(name: str, service: str, namespace: str, domain: str, count: int) -> list[str]:
    names = []
    for ordinal in range(count):
        pod = f"{name}-{ordinal}"
        names += [
            pod,
            f"{pod}.{service}",
            f"{pod}.{service}.{namespace}",
            f"{pod}.{service}.{namespace}.svc",
            f"{pod}.{service}.{namespace}.svc.{domain}",
        ]
    return names


def service_names(service: str, namespace: str, domain: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
    ]


def expected_summary(out: Path, actions: dict[str, str], members: str, secrets: str = "") -> str:
    lines = [f"PKI in {out}:"]
    for role in ("ca", *LEAVES):
        certificate = cert(out, f"{role}.crt")
        key = x509.load_key((out / f"{role}.key").read_bytes())
        names = x509.names_of(certificate)
        common_name = "no CN" if role == "agent" else f"CN {x509.common_name_of(certificate)}"
        details = [x509.describe_key(key), common_name]
        if names.dns_names:
            details.append(f"{len(names.dns_names)} DNS names")
        if names.ip_addresses:
            details.append("IP 127.0.0.1")
        details.append(f"valid until {certificate.not_valid_after_utc:%Y-%m-%d}")
        files = f"{role}.crt, {role}.key"
        lines.append(f"  {role:<7}{actions[role]:<9}{files:<24}{', '.join(details)}")
    lines.append(f"  server and peer certificates name {members}")
    if secrets:
        lines.append(secrets)
    return "\n".join(lines) + "\n"


def test_defaults_create_a_ca_and_four_certificates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "pki"
    code, stdout, stderr = run_pki(capsys, "--out", str(out))
    assert (code, stderr) == (0, "")
    assert sorted(path.name for path in out.iterdir()) == list(FILES)
    assert stdout == expected_summary(
        out,
        dict.fromkeys(("ca", *LEAVES), "created"),
        "members etcd-0 to etcd-8 of namespace default",
    )
    for name in FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
        if name.endswith(".key"):
            assert b"PRIVATE KEY" in (out / name).read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert "PRIVATE" not in stdout

    members = member_names("etcd", "etcd-headless", "default", "cluster.local", 9)
    headless = service_names("etcd-headless", "default", "cluster.local")
    server = cert(out, "server.crt")
    assert x509.names_of(server) == x509.Names(
        dns_names=(
            *members,
            *service_names("etcd", "default", "cluster.local"),
            *headless,
            "localhost",
        ),
        ip_addresses=("127.0.0.1",),
    )
    assert x509.usages_of(server) == ["client auth", "digital signature", "server auth"]
    assert x509.common_name_of(server) == "etcd-server"
    peer = cert(out, "peer.crt")
    assert x509.names_of(peer) == x509.Names(dns_names=(*members, *headless))
    assert x509.usages_of(peer) == ["client auth", "digital signature", "server auth"]
    client = cert(out, "client.crt")
    assert x509.names_of(client) == x509.Names()
    assert x509.common_name_of(client) == "root"
    assert x509.usages_of(client) == ["client auth", "digital signature"]
    agent = cert(out, "agent.crt")
    assert x509.common_name_of(agent) == ""
    assert agent.subject.rdns == []
    assert x509.names_of(agent) == x509.Names(uris=(AGENT_URI,))
    # RFC 5280 4.2.1.6: with an empty subject the SAN extension is critical.
    assert agent.extensions.get_extension_for_class(cx509.SubjectAlternativeName).critical
    assert x509.usages_of(agent) == ["client auth", "digital signature"]
    ca = cert(out, "ca.crt")
    assert x509.common_name_of(ca) == "etcd-ca"
    assert x509.is_ca(ca) and x509.is_self_signed(ca)
    for name in ("ca", *LEAVES):
        key = x509.load_key((out / f"{name}.key").read_bytes())
        assert x509.describe_key(key) == "ECDSA P-256"
        assert x509.key_matches(cert(out, f"{name}.crt"), key)
    assert server.not_valid_after_utc - server.not_valid_before_utc == timedelta(days=365)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)


def test_certificates_chain_to_the_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_pki(capsys, "--out", str(tmp_path))[0] == 0
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            "ca.crt",
            "server.crt",
            "peer.crt",
            "client.crt",
            "agent.crt",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (
        0,
        "server.crt: OK\npeer.crt: OK\nclient.crt: OK\nagent.crt: OK\n",
    )
    for purpose, name in (
        ("sslserver", "server.crt"),
        ("sslclient", "client.crt"),
        ("sslclient", "agent.crt"),
    ):
        checked = subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", "ca.crt", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.stdout == f"{name}: OK\n"
    ca = cert(tmp_path, "ca.crt")
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .build_server_verifier(cx509.DNSName("etcd-2.etcd-headless.default.svc.cluster.local"))
    )
    assert verifier.verify(cert(tmp_path, "server.crt"), []) == [cert(tmp_path, "server.crt"), ca]


def test_names_follow_name_namespace_services_domain_and_max_members(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, stderr = run_pki(
        capsys,
        "--out", str(tmp_path),
        "--name", "kv",
        "--namespace", "store",
        "--cluster-domain", "corp.internal",
        "--replicas", "3",
        "--max-members", "5",
        "--headless-service", "kv-peers",
        "--client-service", "kv-client",
        "--client-cn", "app",
        "--days", "30",
    )  # fmt: skip
    assert (code, stderr) == (0, "")
    members = member_names("kv", "kv-peers", "store", "corp.internal", 5)
    server = cert(tmp_path, "server.crt")
    assert x509.names_of(server).dns_names == (
        *members,
        *service_names("kv-client", "store", "corp.internal"),
        *service_names("kv-peers", "store", "corp.internal"),
        "localhost",
    )
    assert x509.common_name_of(server) == "kv-server"
    assert x509.common_name_of(cert(tmp_path, "client.crt")) == "app"
    assert x509.common_name_of(cert(tmp_path, "ca.crt")) == "kv-ca"
    assert x509.names_of(cert(tmp_path, "agent.crt")) == x509.Names(
        uris=("spiffe://corp.internal/ns/store/member-agent/kv",)
    )
    assert server.not_valid_after_utc - server.not_valid_before_utc == timedelta(days=30)


def test_max_members_defaults_to_replicas_when_above_nine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path), "--replicas", "11")[0] == 0
    peer = x509.names_of(cert(tmp_path, "peer.crt")).dns_names
    members = member_names("etcd", "etcd-headless", "default", "cluster.local", 11)
    assert peer[: len(members)] == tuple(members)
    assert "etcd-11" not in peer


@pytest.mark.parametrize(
    ("args", "description", "rsa_header"),
    [
        (["--key-algorithm", "rsa"], "RSA 2048", True),
        (["--key-algorithm", "rsa", "--key-size", "3072"], "RSA 3072", True),
        (["--key-algorithm", "ecdsa", "--key-size", "384"], "ECDSA P-384", False),
        (["--key-algorithm", "ed25519"], "Ed25519", False),
    ],
)
def test_key_algorithm_and_size(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    description: str,
    rsa_header: bool,
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path), *args)[0] == 0
    for name in ("ca", *LEAVES):
        data = (tmp_path / f"{name}.key").read_bytes()
        assert x509.describe_key(x509.load_key(data)) == description
        assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    for name in ("client.crt", "agent.crt"):
        usages = x509.usages_of(cert(tmp_path, name))
        assert ("key encipherment" in usages) is rsa_header, name


def test_second_run_with_the_same_inputs_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ("--out", str(tmp_path), "--format", "secrets", "--namespace", "db")
    assert run_pki(capsys, *args)[0] == 0
    before = snapshot(tmp_path)
    code, stdout, stderr = run_pki(capsys, *args)
    assert (code, stderr) == (0, "")
    assert snapshot(tmp_path) == before
    assert stdout == expected_summary(
        tmp_path,
        dict.fromkeys(("ca", *LEAVES), "kept"),
        "members etcd-0 to etcd-8 of namespace db",
        f"  secrets kept     secrets.yaml            etcd-server-tls, etcd-peer-tls, "
        f"etcd-client-tls, etcd-agent-tls (kubectl apply -f {tmp_path / 'secrets.yaml'})",
    )


def test_secrets_format_writes_four_tls_secrets_matching_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, _ = run_pki(
        capsys, "--out", str(tmp_path), "--format", "secrets", "--name", "kv", "--namespace", "db"
    )
    assert code == 0
    assert stdout.splitlines()[-1] == (
        f"  secrets written  secrets.yaml            kv-server-tls, kv-peer-tls, kv-client-tls, "
        f"kv-agent-tls (kubectl apply -f {tmp_path / 'secrets.yaml'})"
    )
    assert stat.S_IMODE((tmp_path / "secrets.yaml").stat().st_mode) == 0o600
    documents = list(yaml.safe_load_all((tmp_path / "secrets.yaml").read_text()))
    assert [document["metadata"]["name"] for document in documents] == [
        "kv-server-tls",
        "kv-peer-tls",
        "kv-client-tls",
        "kv-agent-tls",
    ]
    by_name = {document["metadata"]["name"]: document for document in documents}
    ca = (tmp_path / "ca.crt").read_bytes()
    for role in LEAVES:
        secret = by_name[f"kv-{role}-tls"]
        assert secret["apiVersion"] == "v1"
        assert secret["kind"] == "Secret"
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["metadata"]["namespace"] == "db"
        assert secret["metadata"]["labels"] == {
            "app.kubernetes.io/name": "etcd",
            "app.kubernetes.io/component": f"{role}-tls",
            "app.kubernetes.io/managed-by": "etcd-chart-pki",
        }
        data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
        assert data == {
            "tls.crt": (tmp_path / f"{role}.crt").read_bytes(),
            "tls.key": (tmp_path / f"{role}.key").read_bytes(),
            "ca.crt": ca,
        }


def test_more_members_than_the_certificates_cover_is_an_error_naming_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path), "--max-members", "3")[0] == 0
    before = snapshot(tmp_path)
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path), "--max-members", "5")
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/server.crt: does not cover 10 requested name(s) (etcd-3, "
        "etcd-3.etcd-headless, etcd-3.etcd-headless.default, ...); run again with --force-renew "
        "to replace it\n"
        f"etcd-chart pki: {tmp_path}/peer.crt: does not cover 10 requested name(s) (etcd-3, "
        "etcd-3.etcd-headless, etcd-3.etcd-headless.default, ...); run again with --force-renew "
        "to replace it\n"
    )
    assert snapshot(tmp_path) == before


def test_force_renew_replaces_the_leaves_and_keeps_the_ca(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path), "--max-members", "3")[0] == 0
    before = snapshot(tmp_path)
    code, stdout, stderr = run_pki(
        capsys, "--out", str(tmp_path), "--max-members", "5", "--force-renew"
    )
    assert (code, stderr) == (0, "")
    after = snapshot(tmp_path)
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    for name in FILES:
        if not name.startswith("ca."):
            assert after[name][0] != before[name][0], name
    assert stdout == expected_summary(
        tmp_path,
        {"ca": "kept", **dict.fromkeys(LEAVES, "replaced")},
        "members etcd-0 to etcd-4 of namespace default",
    )
    ca = cert(tmp_path, "ca.crt")
    server = cert(tmp_path, "server.crt")
    assert x509.issued_by(server, ca)
    assert (
        x509.missing_names(
            server, member_names("etcd", "etcd-headless", "default", "cluster.local", 5)
        )
        == []
    )


def test_existing_ca_is_reused_and_copied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path / "first"))[0] == 0
    ca_cert, ca_key = tmp_path / "first" / "ca.crt", tmp_path / "first" / "ca.key"
    out = tmp_path / "second"
    args = ("--out", str(out), "--ca-cert", str(ca_cert), "--ca-key", str(ca_key))
    code, stdout, stderr = run_pki(capsys, *args)
    assert (code, stderr) == (0, "")
    assert stdout.splitlines()[1].startswith("  ca     created  ca.crt, ca.key")
    assert cert(out, "ca.crt") == cert(tmp_path / "first", "ca.crt")
    assert x509.issued_by(cert(out, "server.crt"), cert(tmp_path / "first", "ca.crt"))
    assert x509.issued_by(cert(out, "client.crt"), cert(tmp_path / "first", "ca.crt"))
    before = snapshot(out)
    code, stdout, _ = run_pki(capsys, *args)
    assert code == 0
    assert stdout.splitlines()[1].startswith("  ca     kept     ca.crt, ca.key")
    assert snapshot(out) == before


def test_another_ca_than_the_one_in_the_directory_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path / "a"))[0] == 0
    assert run_pki(capsys, "--out", str(tmp_path / "b"))[0] == 0
    before = snapshot(tmp_path / "b")
    args = (
        "--out", str(tmp_path / "b"),
        "--ca-cert", str(tmp_path / "a" / "ca.crt"),
        "--ca-key", str(tmp_path / "a" / "ca.key"),
    )  # fmt: skip
    code, stdout, stderr = run_pki(capsys, *args)
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/b/ca.crt: holds another CA than --ca-cert "
        f"{tmp_path}/a/ca.crt; run again with --force-renew to replace it (and every certificate "
        "it signed)\n"
    )
    assert snapshot(tmp_path / "b") == before
    code, stdout, stderr = run_pki(capsys, *args, "--force-renew")
    assert (code, stderr) == (0, "")
    assert stdout.splitlines()[1].startswith("  ca     replaced ca.crt, ca.key")
    ca = cert(tmp_path / "a", "ca.crt")
    assert cert(tmp_path / "b", "ca.crt") == ca
    for role in LEAVES:
        assert x509.issued_by(cert(tmp_path / "b", f"{role}.crt"), ca)


def test_certificates_that_do_not_chain_to_the_ca_are_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path / "a"))[0] == 0
    assert run_pki(capsys, "--out", str(tmp_path / "b"))[0] == 0
    for name in ("server.crt", "server.key"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (tmp_path / "b" / "peer.crt").write_bytes((tmp_path / "a" / "peer.crt").read_bytes())
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path / "b"))
    assert (code, stdout) == (1, "")
    b = tmp_path / "b"
    assert stderr == (
        f"etcd-chart pki: {b}/server.crt: was not issued by the CA in {b}/ca.crt; run again with "
        "--force-renew to replace it\n"
        f"etcd-chart pki: {b}/peer.key: is not the key of {b}/peer.crt; run again with "
        "--force-renew to replace it\n"
        f"etcd-chart pki: {b}/peer.crt: was not issued by the CA in {b}/ca.crt; run again with "
        "--force-renew to replace it\n"
    )


def test_ca_key_that_does_not_match_its_certificate_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path / "a"))[0] == 0
    assert run_pki(capsys, "--out", str(tmp_path / "b"))[0] == 0
    out = tmp_path / "out"
    code, stdout, stderr = run_pki(
        capsys,
        "--out", str(out),
        "--ca-cert", str(tmp_path / "a" / "ca.crt"),
        "--ca-key", str(tmp_path / "b" / "ca.key"),
    )  # fmt: skip
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: --ca-key: {tmp_path}/b/ca.key is not the key of --ca-cert "
        f"{tmp_path}/a/ca.crt; give the private key that belongs to the CA certificate\n"
    )
    assert not out.exists()

    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path / "a"))
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/a/ca.key: is not the key of {tmp_path}/a/ca.crt; put the "
        "CA's own key there, or move both away to start a new CA\n"
    )


def test_a_leaf_certificate_as_ca_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path / "a"))[0] == 0
    code, stdout, stderr = run_pki(
        capsys,
        "--out", str(tmp_path / "out"),
        "--ca-cert", str(tmp_path / "a" / "server.crt"),
        "--ca-key", str(tmp_path / "a" / "server.key"),
    )  # fmt: skip
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: --ca-cert: {tmp_path}/a/server.crt is not a CA certificate (CA:FALSE); "
        "give a CA certificate\n"
    )


def test_unreadable_ca_file_cannot_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, stdout, stderr = run_pki(
        capsys,
        "--out", str(tmp_path / "out"),
        "--ca-cert", str(tmp_path / "missing.crt"),
        "--ca-key", str(tmp_path / "missing.key"),
    )  # fmt: skip
    assert (code, stdout) == (2, "")
    assert stderr == f"etcd-chart pki: {tmp_path}/missing.crt: No such file or directory\n"


def test_bad_options_are_all_reported_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, stderr = run_pki(
        capsys,
        "--out", str(tmp_path / "out"),
        "--name", "Etcd",
        "--cluster-domain", "bad_domain",
        "--replicas", "5",
        "--max-members", "3",
        "--key-algorithm", "ed25519",
        "--key-size", "256",
        "--days", "0",
        "--ca-cert", str(tmp_path / "ca.crt"),
    )  # fmt: skip
    assert (code, stdout) == (1, "")
    assert stderr.splitlines() == [
        "etcd-chart pki: --name: 'Etcd' is not a DNS label (lowercase letters, digits and '-', at "
        "most 63 characters, starting and ending with a letter or digit)",
        "etcd-chart pki: --headless-service: 'Etcd-headless' is not a DNS label (lowercase "
        "letters, digits and '-', at most 63 characters, starting and ending with a letter or "
        "digit)",
        "etcd-chart pki: --client-service: 'Etcd' is not a DNS label (lowercase letters, digits "
        "and '-', at most 63 characters, starting and ending with a letter or digit)",
        "etcd-chart pki: --cluster-domain: 'bad_domain' is not a DNS domain (for example "
        "cluster.local)",
        "etcd-chart pki: --max-members: 3 is less than --replicas 5; the certificates must name "
        "every member the StatefulSet can have",
        "etcd-chart pki: --days: 0 is less than 1",
        "etcd-chart pki: --ca-cert and --ca-key: give both (the CA certificate and its key) or "
        "none",
        "etcd-chart pki: --key-size: Ed25519 keys have a fixed size; leave --key-size out",
    ]
    assert not (tmp_path / "out").exists()


def test_wrong_key_size_for_the_algorithm(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path), "--key-size", "2048")
    assert (code, stdout) == (1, "")
    assert (
        stderr
        == "etcd-chart pki: --key-size: 2048 is not a valid ECDSA key size; use one of 256, 384, "
        "521\n"
    )


def test_changed_client_cn_and_key_algorithm_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path))[0] == 0
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path), "--client-cn", "app")
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/client.crt: has CN 'root', not --client-cn 'app'; run again "
        "with --force-renew to replace it\n"
    )
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path), "--key-algorithm", "rsa")
    assert (code, stdout) == (1, "")
    assert stderr == "".join(
        f"etcd-chart pki: {tmp_path}/{role}.key: is ECDSA P-256, not the requested RSA 2048; run "
        "again with --force-renew to replace it\n"
        for role in LEAVES
    )


def test_agent_certificate_with_a_common_name_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_pki(capsys, "--out", str(tmp_path))[0] == 0
    ca = cert(tmp_path, "ca.crt")
    ca_key = x509.load_key((tmp_path / "ca.key").read_bytes())
    key = x509.generate_key("ecdsa")
    request = x509.CertificateRequest(
        common_name="etcd-agent",
        uris=(AGENT_URI,),
        usages=("digital signature", "client auth"),
        duration=timedelta(days=365),
    )
    (tmp_path / "agent.crt").write_bytes(x509.cert_pem(x509.sign_leaf(request, key, ca, ca_key)))
    (tmp_path / "agent.key").write_bytes(x509.key_pem(key))
    before = snapshot(tmp_path)
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path))
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/agent.crt: has CN 'etcd-agent'; the agent's certificate "
        "must have none (etcd's JSON gateway refuses a CN once auth is on); run again with "
        "--force-renew to replace it\n"
    )
    assert snapshot(tmp_path) == before
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path), "--force-renew")
    assert (code, stderr) == (0, "")
    assert stdout == expected_summary(
        tmp_path,
        {"ca": "kept", **dict.fromkeys(LEAVES, "replaced")},
        "members etcd-0 to etcd-8 of namespace default",
    )
    agent = cert(tmp_path, "agent.crt")
    assert x509.common_name_of(agent) == ""
    assert x509.names_of(agent) == x509.Names(uris=(AGENT_URI,))


def test_half_a_pair_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_pki(capsys, "--out", str(tmp_path))[0] == 0
    (tmp_path / "peer.key").unlink()
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path))
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/peer.key: missing while {tmp_path}/peer.crt exists; run "
        "again with --force-renew to replace both\n"
    )
    (tmp_path / "ca.key").unlink()
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path))
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"etcd-chart pki: {tmp_path}/ca.key: missing while {tmp_path}/ca.crt exists; put the "
        "CA's other half back, or give the CA with --ca-cert and --ca-key\n"
    )


def test_expired_certificate_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    pki.ensure_pki(pki.PkiOptions(out=tmp_path, days=2), now=past)
    code, stdout, stderr = run_pki(capsys, "--out", str(tmp_path))
    assert (code, stdout) == (1, "")
    expiry = (past + timedelta(days=2)).strftime("%Y-%m-%d")
    assert stderr == "".join(
        f"etcd-chart pki: {tmp_path}/{role}.crt: expired on {expiry}; run again with "
        "--force-renew to replace it\n"
        for role in LEAVES
    )
    code, _, stderr = run_pki(capsys, "--out", str(tmp_path), "--force-renew")
    assert (code, stderr) == (0, "")
    assert cert(tmp_path, "server.crt").not_valid_after_utc > datetime.now(UTC)


def test_out_must_be_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    code, stdout, stderr = run_pki(capsys, "--out", str(target))
    assert (code, stdout, stderr) == (
        1,
        "",
        f"etcd-chart pki: --out: {target} exists and is not a directory\n",
    )
