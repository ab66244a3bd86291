"""The local cert-manager: Issuers and Certificates of a release issued with `cryptography`.

Every Issuer and Certificate a test hands over is first validated against cert-manager's own
CRD schemas (`../shared/crd-schemas/`), so the objects are ones the real controller accepts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509 as cx509
from etcd_chart import x509
from etcd_chart.certmanager import CertManagerError, issue_certificates, parse_duration

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_certmanager")

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
NS = "db"
Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def validators(shared_dir: Path) -> dict[str, jsonschema.Draft7Validator]:
    found = {}
    for kind in ("Certificate", "Issuer", "ClusterIssuer"):
        schema = json.loads(
            (shared_dir / "crd-schemas" / f"cert-manager.io_v1_{kind}.json").read_text()
        )
        found[kind] = jsonschema.Draft7Validator(schema)
    return found


@pytest.fixture
def issue(validators: dict[str, jsonschema.Draft7Validator], tmp_path: Path) -> Any:
    """issue(objects, **kwargs): validate against the CRDs, then issue into tmp_path/store."""

    def _issue(objects: Objects, **kwargs: Any) -> dict[tuple[str, str], dict[str, bytes]]:
        for obj in objects:
            if obj["kind"] not in validators:
                continue  # the ConfigMap in the stream
            errors = [error.message for error in validators[obj["kind"]].iter_errors(obj)]
            assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}: {errors}"
        kwargs.setdefault("now", NOW)
        return issue_certificates(objects, tmp_path / "store", **kwargs)

    return _issue


def issuer(name: str, spec: dict[str, Any], kind: str = "Issuer") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if kind == "Issuer":
        metadata["namespace"] = NS
    return {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": metadata, "spec": spec}


def certificate(name: str, issuer_name: str, **spec: Any) -> dict[str, Any]:
    body = {"secretName": spec.pop("secretName", f"{name}-tls"), "issuerRef": {"name": issuer_name}}
    body.update(spec)
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


SERVER_NAMES = ["etcd-0.etcd-headless.db.svc.cluster.local", "etcd", "localhost"]


def chain_objects(server_spec: Mapping[str, Any] | None = None) -> Objects:
    """What the chart renders: self-signed Issuer -> CA Certificate -> CA Issuer -> leaves.
    Listed leaves first, so the order of the stream does not decide the issuing order."""
    server: dict[str, Any] = {
        "commonName": "etcd-server",
        "dnsNames": SERVER_NAMES,
        "ipAddresses": ["127.0.0.1"],
        "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        "duration": "8760h",
        "privateKey": {"algorithm": "ECDSA", "size": 256},
    }
    server.update(server_spec or {})
    return [
        certificate("etcd-server", "etcd-ca", **server),
        certificate(
            "etcd-client",
            "etcd-ca",
            commonName="root",
            usages=["client auth"],
            privateKey={"algorithm": "Ed25519"},
        ),
        issuer("etcd-ca", {"ca": {"secretName": "etcd-ca"}}),
        certificate(
            "etcd-ca",
            "etcd-selfsigned",
            secretName="etcd-ca",
            isCA=True,
            commonName="etcd-ca",
            duration="87600h",
            privateKey={"algorithm": "ECDSA", "size": 384},
        ),
        issuer("etcd-selfsigned", {"selfSigned": {}}),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "etcd-config"}},
    ]


def load(data: Mapping[str, bytes]) -> tuple[cx509.Certificate, x509.PrivateKey, cx509.Certificate]:
    return (
        x509.load_cert(data["tls.crt"]),
        x509.load_key(data["tls.key"]),
        x509.load_cert(data["ca.crt"]),
    )


def openssl_verify(tmp_path: Path, ca: bytes, leaf: bytes) -> str:
    (tmp_path / "verify-ca.pem").write_bytes(ca)
    (tmp_path / "verify-leaf.pem").write_bytes(leaf)
    result = subprocess.run(
        ["openssl", "verify", "-attime", str(int((NOW + timedelta(hours=1)).timestamp())),
         "-CAfile", "verify-ca.pem", "verify-leaf.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout


def test_ca_chain_is_issued_in_dependency_order(issue: Any, tmp_path: Path) -> None:
    secrets = issue(chain_objects())
    assert sorted(secrets) == [(NS, "etcd-ca"), (NS, "etcd-client-tls"), (NS, "etcd-server-tls")]

    ca_cert, ca_key, ca_ca = load(secrets[(NS, "etcd-ca")])
    assert secrets[(NS, "etcd-ca")]["ca.crt"] == secrets[(NS, "etcd-ca")]["tls.crt"]
    assert x509.is_ca(ca_cert) and x509.is_self_signed(ca_cert)
    assert x509.common_name_of(ca_cert) == "etcd-ca"
    assert x509.describe_key(ca_key) == "ECDSA P-384"
    assert x509.usages_of(ca_cert) == ["cert sign", "digital signature", "key encipherment"]
    assert ca_cert.not_valid_after_utc == NOW + timedelta(hours=87600)

    server, server_key, server_ca = load(secrets[(NS, "etcd-server-tls")])
    assert server_ca == ca_cert
    assert secrets[(NS, "etcd-server-tls")]["tls.crt"].count(b"BEGIN CERTIFICATE") == 1
    assert x509.names_of(server) == x509.Names(
        dns_names=tuple(SERVER_NAMES), ip_addresses=("127.0.0.1",)
    )
    assert x509.usages_of(server) == [
        "client auth",
        "digital signature",
        "key encipherment",
        "server auth",
    ]
    assert x509.describe_key(server_key) == "ECDSA P-256"
    assert x509.key_matches(server, server_key)
    assert x509.issued_by(server, ca_cert)
    assert (server.not_valid_before_utc, server.not_valid_after_utc) == (
        NOW,
        NOW + timedelta(hours=8760),
    )
    assert secrets[(NS, "etcd-server-tls")]["tls.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")

    client, client_key, client_ca = load(secrets[(NS, "etcd-client-tls")])
    assert client_ca == ca_cert
    assert x509.common_name_of(client) == "root"
    assert x509.usages_of(client) == ["client auth"]
    assert x509.describe_key(client_key) == "Ed25519"
    assert client.not_valid_after_utc == NOW + timedelta(hours=2160)  # cert-manager's default
    assert secrets[(NS, "etcd-client-tls")]["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----")

    ca_pem = secrets[(NS, "etcd-ca")]["tls.crt"]
    for name in ("etcd-server-tls", "etcd-client-tls"):
        assert openssl_verify(tmp_path, ca_pem, secrets[(NS, name)]["tls.crt"]) == (
            "verify-leaf.pem: OK\n"
        )


def test_defaults_are_rsa_2048_pkcs1_with_cert_managers_usages(issue: Any) -> None:
    secrets = issue(
        [issuer("self", {"selfSigned": {}}), certificate("plain", "self", dnsNames=["a.example"])]
    )
    data = secrets[(NS, "plain-tls")]
    cert, key, ca = load(data)
    assert x509.describe_key(key) == "RSA 2048"
    assert data["tls.key"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert x509.usages_of(cert) == ["digital signature", "key encipherment"]
    assert ca == cert and x509.is_self_signed(cert) and not x509.is_ca(cert)
    assert cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).critical


def test_subject_uris_emails_encoding_and_rsa_size(issue: Any) -> None:
    secrets = issue(
        [
            issuer("self", {"selfSigned": {}}),
            certificate(
                "full",
                "self",
                commonName="full",
                subject={"organizations": ["Example"], "countries": ["NL"]},
                uris=["spiffe://cluster.local/ns/db/sa/etcd"],
                emailAddresses=["ops@example.org"],
                privateKey={"algorithm": "RSA", "size": 3072, "encoding": "PKCS8"},
            ),
        ]
    )
    data = secrets[(NS, "full-tls")]
    cert, key, _ = load(data)
    assert cert.subject.rfc4514_string() == "CN=full,O=Example,C=NL"
    assert x509.names_of(cert) == x509.Names(
        uris=("spiffe://cluster.local/ns/db/sa/etcd",), email_addresses=("ops@example.org",)
    )
    assert x509.describe_key(key) == "RSA 3072"
    assert data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----")


def test_ca_from_an_existing_secret_and_a_cluster_issuer(issue: Any, tmp_path: Path) -> None:
    ca_key = x509.generate_key("ecdsa")
    ca_cert = x509.self_signed_ca("corp-ca", ca_key, timedelta(days=365), NOW)
    existing = {
        ("cert-manager", "corp-ca"): {
            "tls.crt": x509.cert_pem(ca_cert),
            "tls.key": x509.key_pem(ca_key),
        }
    }
    objects = [
        issuer("corp", {"ca": {"secretName": "corp-ca"}}, kind="ClusterIssuer"),
        {
            **certificate("leaf", "corp", dnsNames=["a.example"], duration="17520h"),
        },
    ]
    objects[1]["spec"]["issuerRef"] = {
        "name": "corp",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    secrets = issue(objects, existing_secrets=existing)
    assert sorted(secrets) == [(NS, "leaf-tls")]
    cert, _, ca = load(secrets[(NS, "leaf-tls")])
    assert ca == ca_cert
    assert x509.issued_by(cert, ca_cert)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)  # capped at the CA's expiry


def test_second_call_reuses_what_it_issued(issue: Any, tmp_path: Path) -> None:
    first = issue(chain_objects())
    store = tmp_path / "store"
    stamps = {path: path.stat().st_mtime_ns for path in store.rglob("*") if path.is_file()}
    assert sorted(str(path.relative_to(store)) for path in stamps) == [
        f"{NS}/{secret}/{name}"
        for secret in ("etcd-ca", "etcd-client-tls", "etcd-server-tls")
        for name in ("ca.crt", "state.json", "tls.crt", "tls.key")
    ]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in stamps)
    second = issue(chain_objects(), now=NOW + timedelta(days=30))
    assert second == first
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_renewal_window_defaults_to_the_last_third(issue: Any) -> None:
    objects = chain_objects()
    first = issue(objects)
    lifetime = timedelta(hours=8760)
    before = issue(objects, now=NOW + lifetime * 2 / 3 - timedelta(minutes=1))
    assert before[(NS, "etcd-server-tls")] == first[(NS, "etcd-server-tls")]
    after = issue(objects, now=NOW + lifetime * 2 / 3 + timedelta(minutes=1))
    renewed, _, _ = load(after[(NS, "etcd-server-tls")])
    assert renewed.not_valid_before_utc == NOW + lifetime * 2 / 3 + timedelta(minutes=1)
    assert after[(NS, "etcd-ca")] == first[(NS, "etcd-ca")]


def test_renew_before_sets_the_window(issue: Any) -> None:
    objects = chain_objects({"renewBefore": "720h"})
    first = issue(objects)
    kept = issue(objects, now=NOW + timedelta(hours=8760 - 721))
    assert kept[(NS, "etcd-server-tls")] == first[(NS, "etcd-server-tls")]
    renewed = issue(objects, now=NOW + timedelta(hours=8760 - 719))
    assert renewed[(NS, "etcd-server-tls")] != first[(NS, "etcd-server-tls")]
    assert renewed[(NS, "etcd-ca")] == first[(NS, "etcd-ca")]


def test_renew_before_percentage_sets_the_window(issue: Any) -> None:
    objects = chain_objects({"renewBeforePercentage": 10})
    first = issue(objects)
    kept = issue(objects, now=NOW + timedelta(hours=8760 * 0.9 - 1))
    assert kept[(NS, "etcd-server-tls")] == first[(NS, "etcd-server-tls")]
    renewed = issue(objects, now=NOW + timedelta(hours=8760 * 0.9 + 1))
    assert renewed[(NS, "etcd-server-tls")] != first[(NS, "etcd-server-tls")]


def test_changing_only_the_renewal_settings_reissues_nothing(issue: Any) -> None:
    first = issue(chain_objects())
    second = issue(chain_objects({"renewBefore": "720h"}), now=NOW + timedelta(days=1))
    assert second == first


def test_a_changed_spec_is_reissued_and_the_rest_kept(issue: Any) -> None:
    first = issue(chain_objects())
    more = [*SERVER_NAMES, "etcd-5.etcd-headless.db.svc.cluster.local"]
    second = issue(chain_objects({"dnsNames": more}))
    server, key, _ = load(second[(NS, "etcd-server-tls")])
    assert x509.names_of(server).dns_names == tuple(more)
    old_server, old_key, _ = load(first[(NS, "etcd-server-tls")])
    assert server.serial_number != old_server.serial_number
    assert not x509.key_matches(server, old_key)  # rotationPolicy Always (the default)
    assert second[(NS, "etcd-ca")] == first[(NS, "etcd-ca")]
    assert second[(NS, "etcd-client-tls")] == first[(NS, "etcd-client-tls")]


def test_rotation_policy_never_keeps_the_key(issue: Any) -> None:
    spec = {"privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}
    first = issue(chain_objects(spec))
    second = issue(chain_objects({**spec, "duration": "4380h"}))
    _, old_key, _ = load(first[(NS, "etcd-server-tls")])
    server, _, _ = load(second[(NS, "etcd-server-tls")])
    assert server.not_valid_after_utc == NOW + timedelta(hours=4380)
    assert x509.key_matches(server, old_key)


def test_a_new_ca_reissues_the_leaves(issue: Any) -> None:
    first = issue(chain_objects())
    objects = chain_objects()
    objects[3]["spec"]["commonName"] = "etcd-ca-2"
    second = issue(objects)
    ca, _, _ = load(second[(NS, "etcd-ca")])
    assert x509.common_name_of(ca) == "etcd-ca-2"
    for name in ("etcd-server-tls", "etcd-client-tls"):
        leaf, _, leaf_ca = load(second[(NS, name)])
        assert leaf_ca == ca
        assert x509.issued_by(leaf, ca)
        assert second[(NS, name)] != first[(NS, name)]


def test_objects_without_namespace_use_the_default(tmp_path: Path) -> None:
    objects = [
        {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "self"},
         "spec": {"selfSigned": {}}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"},
         "spec": {"secretName": "c-tls", "issuerRef": {"name": "self"}, "commonName": "c",
                  "privateKey": {"algorithm": "ECDSA"}}},
    ]  # fmt: skip
    secrets = issue_certificates(objects, tmp_path, now=NOW, default_namespace="team")
    assert sorted(secrets) == [("team", "c-tls")]
    assert (tmp_path / "team" / "c-tls" / "tls.crt").read_bytes() == secrets[("team", "c-tls")][
        "tls.crt"
    ]


def error_of(issue: Any, objects: Objects, **kwargs: Any) -> list[str]:
    with pytest.raises(CertManagerError) as caught:
        issue(objects, **kwargs)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_issuer_that_does_not_exist(issue: Any, tmp_path: Path) -> None:
    objects = [certificate("etcd-server", "nope", commonName="x")]
    assert error_of(issue, objects) == [
        "Certificate/etcd-server: spec.issuerRef.name: Issuer 'nope' does not exist in namespace "
        "db; add the Issuer to the release or point issuerRef at one that exists"
    ]
    objects[0]["spec"]["issuerRef"]["kind"] = "ClusterIssuer"
    assert error_of(issue, objects) == [
        "Certificate/etcd-server: spec.issuerRef.name: ClusterIssuer 'nope' does not exist; add "
        "the ClusterIssuer to the release or point issuerRef at one that exists"
    ]
    assert not (tmp_path / "store").exists()


def test_an_issuer_in_another_namespace_does_not_count(issue: Any) -> None:
    other = issuer("self", {"selfSigned": {}})
    other["metadata"]["namespace"] = "elsewhere"
    assert error_of(issue, [other, certificate("c", "self", commonName="c")]) == [
        "Certificate/c: spec.issuerRef.name: Issuer 'self' does not exist in namespace db; add "
        "the Issuer to the release or point issuerRef at one that exists"
    ]


def test_unknown_issuer_kind_and_group(issue: Any) -> None:
    kind = certificate("a", "self", commonName="a")
    kind["spec"]["issuerRef"]["kind"] = "Issuers"
    group = certificate("b", "self", commonName="b")
    group["spec"]["issuerRef"].update(kind="AWSPCAIssuer", group="awspca.cert-manager.io")
    assert error_of(issue, [issuer("self", {"selfSigned": {}}), kind, group]) == [
        "Certificate/a: spec.issuerRef.kind: 'Issuers' is not an issuer kind of cert-manager.io; "
        "use Issuer or ClusterIssuer",
        "Certificate/b: spec.issuerRef.group: 'awspca.cert-manager.io' is an external issuer, "
        "which the local cert-manager cannot run; use group cert-manager.io (an Issuer or "
        "ClusterIssuer of type selfSigned or ca) or give the certificates as existing Secrets",
    ]


@pytest.mark.parametrize(
    ("spec", "label", "reason"),
    [
        (
            {"acme": {"server": "https://127.0.0.1:14000/dir",
                      "privateKeySecretRef": {"name": "k"}}},
            "an ACME issuer (spec.acme)",
            "it needs a reachable ACME server and solvers",
        ),
        (
            {"vault": {"server": "https://127.0.0.1:8200", "path": "pki/sign/etcd",
                       "auth": {"tokenSecretRef": {"name": "t", "key": "token"}}}},
            "a Vault issuer (spec.vault)",
            "it needs a reachable Vault server",
        ),
    ],
)  # fmt: skip
def test_unsupported_issuer_types_say_so(
    issue: Any, spec: dict[str, Any], label: str, reason: str
) -> None:
    objects = [issuer("remote", spec), certificate("c", "remote", commonName="c")]
    assert error_of(issue, objects) == [
        f"Certificate/c: spec.issuerRef.name: Issuer/remote is {label}, which the local "
        f"cert-manager does not support ({reason}); in the sandbox use a selfSigned or ca issuer, "
        "or give the certificates as existing Secrets"
    ]


def test_ca_secret_missing(issue: Any) -> None:
    objects = [
        issuer("ca", {"ca": {"secretName": "ca-keypair"}}),
        certificate("c", "ca", commonName="c"),
    ]
    assert error_of(issue, objects) == [
        "Certificate/c: spec.issuerRef.name: Issuer/ca reads its CA from Secret db/ca-keypair "
        "(spec.ca.secretName), which does not exist and no Certificate of the release creates it; "
        "create that Secret (tls.crt and tls.key) or add a Certificate with that secretName"
    ]


def test_ca_secret_without_key_or_with_the_wrong_key(issue: Any) -> None:
    ca_key = x509.generate_key("ecdsa")
    ca_cert = x509.self_signed_ca("ca", ca_key, timedelta(days=365), NOW)
    objects = [
        issuer("ca", {"ca": {"secretName": "ca-keypair"}}),
        certificate("c", "ca", commonName="c"),
    ]
    no_key = {(NS, "ca-keypair"): {"tls.crt": x509.cert_pem(ca_cert)}}
    assert error_of(issue, objects, existing_secrets=no_key) == [
        "Certificate/c: spec.issuerRef.name: Issuer/ca reads its CA from Secret db/ca-keypair "
        "(spec.ca.secretName), which has no tls.key; a CA issuer needs the CA certificate "
        "(tls.crt) and its private key (tls.key) in that Secret"
    ]
    wrong = {
        (NS, "ca-keypair"): {
            "tls.crt": x509.cert_pem(ca_cert),
            "tls.key": x509.key_pem(x509.generate_key("ecdsa")),
        }
    }
    assert error_of(issue, objects, existing_secrets=wrong) == [
        "Certificate/c: spec.issuerRef.name: Issuer/ca reads its CA from Secret db/ca-keypair "
        "(spec.ca.secretName), whose tls.key does not belong to its tls.crt; put the CA's own key "
        "in tls.key"
    ]
    leaf_key = x509.generate_key("ecdsa")
    leaf = x509.issue(x509.CertificateRequest(common_name="leaf"), leaf_key.public_key(), leaf_key)
    not_ca = {
        (NS, "ca-keypair"): {"tls.crt": x509.cert_pem(leaf), "tls.key": x509.key_pem(leaf_key)}
    }
    assert error_of(issue, objects, existing_secrets=not_ca) == [
        "Certificate/c: spec.issuerRef.name: Issuer/ca reads its CA from Secret db/ca-keypair "
        "(spec.ca.secretName), whose tls.crt is not a CA certificate (basic constraints "
        "CA:FALSE); issue it with isCA: true"
    ]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"duration": "90d"}, "spec.duration: '90d' is not a duration; write it the Go way, in h, "
         "m and s (for example 2160h for 90 days)"),
        ({"duration": "30m"}, "spec.duration: '30m' is shorter than the minimum of 1h; use 1h or "
         "more"),
        ({"renewBefore": "soon"}, "spec.renewBefore: 'soon' is not a duration; write it the Go "
         "way, in h, m and s (for example 720h for 30 days)"),
        ({"renewBefore": "1m"}, "spec.renewBefore: '1m' is shorter than the minimum of 5m; use 5m "
         "or more"),
        ({"duration": "24h", "renewBefore": "48h"}, "spec.renewBefore: '48h' is not shorter than "
         "spec.duration (24h); make it shorter, for example a third of the duration"),
        ({"privateKey": {"algorithm": "RSA", "size": 1024}}, "spec.privateKey.size: 1024 is not a "
         "valid RSA key size; use one of 2048, 3072, 4096, 8192"),
        ({"privateKey": {"algorithm": "ECDSA", "size": 2048}}, "spec.privateKey.size: 2048 is not "
         "a valid ECDSA key size; use one of 256, 384, 521"),
        ({"ipAddresses": ["10.0.0.300"]}, "spec.ipAddresses[0]: '10.0.0.300' is not an IP "
         "address"),
        ({"commonName": "x" * 65}, "spec.commonName: longer than 64 bytes, the X.509 limit; put "
         "long names in spec.dnsNames"),
        ({"commonName": None}, "spec: names nothing; set at least one of commonName, dnsNames, "
         "ipAddresses, uris or emailAddresses"),
    ],
)  # fmt: skip
def test_invalid_certificate_fields(issue: Any, spec: dict[str, Any], problem: str) -> None:
    cert = certificate("c", "self", commonName="c")
    cert["spec"].update(spec)
    cert["spec"] = {key: value for key, value in cert["spec"].items() if value is not None}
    assert error_of(issue, [issuer("self", {"selfSigned": {}}), cert]) == [
        f"Certificate/c: {problem}"
    ]


def test_every_problem_is_reported_and_nothing_is_stored(issue: Any, tmp_path: Path) -> None:
    objects = chain_objects({"duration": "1 year"})
    objects.append(certificate("orphan", "missing", commonName="o"))
    assert error_of(issue, objects) == [
        "Certificate/etcd-server: spec.duration: '1 year' is not a duration; write it the Go "
        "way, in h, m and s (for example 2160h for 90 days)",
        "Certificate/orphan: spec.issuerRef.name: Issuer 'missing' does not exist in namespace "
        "db; add the Issuer to the release or point issuerRef at one that exists",
    ]
    assert not (tmp_path / "store").exists()


def test_two_certificates_for_one_secret(issue: Any) -> None:
    objects = [
        issuer("self", {"selfSigned": {}}),
        certificate("a", "self", commonName="a", secretName="shared"),
        certificate("b", "self", commonName="b", secretName="shared"),
    ]
    assert error_of(issue, objects) == [
        "Certificate/b: spec.secretName: Secret shared is also written by Certificate/a; give "
        "each Certificate its own Secret"
    ]


def test_a_ca_that_waits_on_itself_is_a_cycle(issue: Any) -> None:
    objects = [
        issuer("ca", {"ca": {"secretName": "ca-tls"}}),
        certificate("ca", "ca", commonName="ca", isCA=True),
    ]
    assert error_of(issue, objects) == [
        "Certificate/ca: spec.issuerRef.name: Issuer/ca waits for Secret db/ca-tls, whose "
        "Certificate itself waits on this chain (a cycle); sign the CA Certificate with a "
        "selfSigned issuer"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2160h", 2160 * 3600), ("1h30m", 5400), ("90m", 5400), ("1.5h", 5400), ("0", 0),
     ("300ms", 0.3), ("-1h", -3600)],
)  # fmt: skip
def test_parse_duration_reads_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "90d", "1h 30m", "h", "1.h2"])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
