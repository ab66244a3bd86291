"""The X.509 helpers: keys, CA and leaf certificates, PEM, and the checks over them."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import verification
from etcd_chart import x509

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def _ca(algorithm: str = "ecdsa", days: int = 3650) -> tuple[cx509.Certificate, x509.PrivateKey]:
    key = x509.generate_key(algorithm)
    return x509.self_signed_ca("test-ca", key, timedelta(days=days), NOW), key


SERVER = x509.CertificateRequest(
    common_name="etcd-server",
    dns_names=("etcd-0.etcd-headless.db.svc.cluster.local", "localhost"),
    ip_addresses=("127.0.0.1", "::1"),
    usages=("digital signature", "key encipherment", "server auth", "client auth"),
    duration=timedelta(days=365),
)


@pytest.mark.parametrize(
    ("algorithm", "size", "kind", "bits"),
    [
        ("ecdsa", None, ec.EllipticCurvePrivateKey, 256),
        ("ecdsa", 384, ec.EllipticCurvePrivateKey, 384),
        ("ecdsa", 521, ec.EllipticCurvePrivateKey, 521),
        ("rsa", None, rsa.RSAPrivateKey, 2048),
        ("rsa", 3072, rsa.RSAPrivateKey, 3072),
        ("ed25519", None, ed25519.Ed25519PrivateKey, 0),
        ("ECDSA", 256, ec.EllipticCurvePrivateKey, 256),
    ],
)
def test_generate_key_makes_the_requested_algorithm_and_size(
    algorithm: str, size: int | None, kind: type, bits: int
) -> None:
    key = x509.generate_key(algorithm, size)
    assert isinstance(key, kind)
    assert x509.key_algorithm(key) == (algorithm.lower(), bits)


@pytest.mark.parametrize(
    ("algorithm", "size", "message"),
    [
        ("dsa", None, "key algorithm 'dsa' is not one of ecdsa, rsa, ed25519"),
        ("rsa", 1024, "RSA key size 1024 is not one of 2048, 3072, 4096, 8192"),
        ("ecdsa", 224, "ECDSA key size 224 is not one of 256, 384, 521"),
    ],
)
def test_generate_key_refuses_unknown_algorithms_and_sizes(
    algorithm: str, size: int, message: str
) -> None:
    with pytest.raises(x509.X509Error) as caught:
        x509.generate_key(algorithm, size)
    assert str(caught.value) == message


def test_describe_key_names_algorithm_and_size() -> None:
    assert x509.describe_key(x509.generate_key("rsa")) == "RSA 2048"
    assert x509.describe_key(x509.generate_key("ecdsa", 384)) == "ECDSA P-384"
    assert x509.describe_key(x509.generate_key("ed25519")) == "Ed25519"


def test_self_signed_ca_is_a_ca_with_exact_validity_and_usages() -> None:
    ca, key = _ca(days=10)
    assert x509.is_ca(ca)
    assert x509.is_self_signed(ca)
    assert x509.key_matches(ca, key)
    assert x509.common_name_of(ca) == "test-ca"
    assert ca.not_valid_before_utc == NOW
    assert ca.not_valid_after_utc == NOW + timedelta(days=10)
    assert x509.usages_of(ca) == ["cert sign", "crl sign", "digital signature"]
    constraints = ca.extensions.get_extension_for_class(cx509.BasicConstraints)
    assert constraints.critical
    assert ca.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier)


@pytest.mark.parametrize("algorithm", ["ecdsa", "rsa", "ed25519"])
def test_leaf_has_the_requested_names_usages_and_chains_to_its_ca(
    algorithm: str, tmp_path: Path
) -> None:
    ca, ca_key = _ca(algorithm)
    key = x509.generate_key(algorithm)
    cert = x509.sign_leaf(SERVER, key, ca, ca_key, NOW)

    assert x509.names_of(cert) == x509.Names(
        dns_names=("etcd-0.etcd-headless.db.svc.cluster.local", "localhost"),
        ip_addresses=("127.0.0.1", "::1"),
    )
    assert x509.usages_of(cert) == [
        "client auth",
        "digital signature",
        "key encipherment",
        "server auth",
    ]
    assert not x509.is_ca(cert)
    assert cert.issuer == ca.subject
    assert x509.issued_by(cert, ca)
    assert not x509.is_self_signed(cert)
    assert x509.key_matches(cert, key)
    assert not x509.key_matches(cert, ca_key)
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    authority = cert.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier).value
    subject_key = ca.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject_key.digest

    (tmp_path / "ca.pem").write_bytes(x509.cert_pem(ca))
    (tmp_path / "leaf.pem").write_bytes(x509.cert_pem(cert))
    result = subprocess.run(
        ["openssl", "verify", "-attime", str(int((NOW + timedelta(days=1)).timestamp())),
         "-CAfile", "ca.pem", "-purpose", "sslserver", "leaf.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "leaf.pem: OK\n"), result.stderr


@pytest.mark.parametrize("algorithm", ["ecdsa", "rsa"])
def test_leaf_passes_cryptography_server_verification(algorithm: str) -> None:
    ca, ca_key = _ca(algorithm)
    cert = x509.sign_leaf(SERVER, x509.generate_key(algorithm), ca, ca_key, NOW)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .time(NOW + timedelta(days=1))
        .build_server_verifier(cx509.DNSName("etcd-0.etcd-headless.db.svc.cluster.local"))
    )
    assert verifier.verify(cert, []) == [cert, ca]
    other_ca, _ = _ca(algorithm)
    stranger = verification.PolicyBuilder().store(verification.Store([other_ca]))
    with pytest.raises(verification.VerificationError):
        stranger.time(NOW + timedelta(days=1)).build_server_verifier(
            cx509.DNSName("localhost")
        ).verify(cert, [])


def test_leaf_lifetime_is_capped_at_the_ca_expiry() -> None:
    ca, ca_key = _ca(days=30)
    cert = x509.sign_leaf(SERVER, x509.generate_key("ecdsa"), ca, ca_key, NOW)
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)


def test_empty_subject_makes_the_names_extension_critical() -> None:
    ca, ca_key = _ca()
    request = x509.CertificateRequest(dns_names=("a.example",), usages=("server auth",))
    cert = x509.sign_leaf(request, x509.generate_key("ecdsa"), ca, ca_key, NOW)
    assert cert.subject == cx509.Name([])
    assert cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).critical


def test_subject_fields_uris_and_emails_are_written() -> None:
    request = x509.CertificateRequest(
        common_name="svc",
        subject=(("organizations", "Example"), ("countries", "NL")),
        uris=("spiffe://cluster.local/ns/db/sa/etcd",),
        email_addresses=("ops@example.org",),
    )
    key = x509.generate_key("ecdsa")
    cert = x509.issue(request, key.public_key(), key, None, NOW)
    assert cert.subject.rfc4514_string() == "CN=svc,C=NL,O=Example"
    assert x509.names_of(cert) == x509.Names(
        uris=("spiffe://cluster.local/ns/db/sa/etcd",), email_addresses=("ops@example.org",)
    )
    assert x509.is_self_signed(cert)


@pytest.mark.parametrize(
    ("algorithm", "size", "digest"),
    [("ecdsa", 256, hashes.SHA256), ("ecdsa", 384, hashes.SHA384), ("rsa", 3072, hashes.SHA384)],
)
def test_signature_digest_follows_the_signer_key(algorithm: str, size: int, digest: type) -> None:
    key = x509.generate_key(algorithm, size)
    cert = x509.self_signed_ca("ca", key, timedelta(days=1), NOW)
    assert isinstance(cert.signature_hash_algorithm, digest)


def test_sign_leaf_refuses_a_ca_key_that_does_not_belong_to_the_ca() -> None:
    ca, _ = _ca()
    with pytest.raises(x509.X509Error) as caught:
        x509.sign_leaf(SERVER, x509.generate_key("ecdsa"), ca, x509.generate_key("ecdsa"), NOW)
    assert str(caught.value) == "the CA private key does not belong to the CA certificate"


def test_issue_refuses_unknown_usages_and_bad_addresses() -> None:
    key = x509.generate_key("ecdsa")
    with pytest.raises(x509.X509Error) as caught:
        x509.issue(x509.CertificateRequest(common_name="a", usages=("server", "client auth")),
                   key.public_key(), key)  # fmt: skip
    assert str(caught.value).startswith(
        "unknown usages 'server'; known: signing, digital signature"
    )
    with pytest.raises(x509.X509Error) as caught:
        x509.issue(x509.CertificateRequest(ip_addresses=("10.0.0.300",)), key.public_key(), key)
    assert str(caught.value) == "'10.0.0.300' is not an IP address"


@pytest.mark.parametrize(
    ("algorithm", "encoding", "header"),
    [
        ("rsa", "PKCS1", b"-----BEGIN RSA PRIVATE KEY-----\n"),
        ("ecdsa", "PKCS1", b"-----BEGIN EC PRIVATE KEY-----\n"),
        ("ed25519", "PKCS1", b"-----BEGIN PRIVATE KEY-----\n"),
        ("rsa", "PKCS8", b"-----BEGIN PRIVATE KEY-----\n"),
        ("ecdsa", "PKCS8", b"-----BEGIN PRIVATE KEY-----\n"),
    ],
)
def test_key_pem_encodings_round_trip(
    algorithm: str, encoding: x509.KeyEncoding, header: bytes
) -> None:
    key = x509.generate_key(algorithm)
    pem = x509.key_pem(key, encoding)
    assert pem.startswith(header)
    loaded = x509.load_key(pem)
    assert x509.key_algorithm(loaded) == x509.key_algorithm(key)
    cert = x509.issue(x509.CertificateRequest(common_name="k"), key.public_key(), key, None, NOW)
    assert x509.key_matches(cert, loaded)


def test_pem_bundles_load_in_order() -> None:
    ca, ca_key = _ca()
    leaf = x509.sign_leaf(SERVER, x509.generate_key("ecdsa"), ca, ca_key, NOW)
    bundle = x509.cert_pem(leaf) + x509.cert_pem(ca)
    assert x509.load_certs(bundle) == [leaf, ca]
    assert x509.load_cert(bundle) == leaf
    assert x509.fingerprint(leaf) != x509.fingerprint(ca)
    assert len(x509.fingerprint(ca)) == 64


def test_loading_bad_pem_names_the_input() -> None:
    with pytest.raises(x509.X509Error) as caught:
        x509.load_cert(b"not a certificate\n", "server.crt")
    assert str(caught.value) == "server.crt holds no PEM certificate (no BEGIN CERTIFICATE line)"
    with pytest.raises(x509.X509Error) as caught:
        x509.load_key(b"nothing here", "server.key")
    assert str(caught.value).startswith("server.key is not a PEM private key (")
    encrypted = x509.generate_key("ecdsa").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(x509.X509Error) as caught:
        x509.load_key(encrypted, "ca.key")
    assert str(caught.value) == "ca.key is encrypted; give it unencrypted"


def test_issued_by_is_false_for_another_ca() -> None:
    ca, ca_key = _ca()
    other, _ = _ca()
    leaf = x509.sign_leaf(SERVER, x509.generate_key("ecdsa"), ca, ca_key, NOW)
    assert x509.issued_by(leaf, ca)
    assert not x509.issued_by(leaf, other)


def test_missing_names_lists_what_the_certificate_does_not_cover() -> None:
    ca, ca_key = _ca()
    request = x509.CertificateRequest(
        dns_names=("etcd-0.etcd-headless", "*.etcd-headless.db.svc"),
        ip_addresses=("127.0.0.1",),
    )
    cert = x509.sign_leaf(request, x509.generate_key("ecdsa"), ca, ca_key, NOW)
    assert (
        x509.missing_names(
            cert,
            [
                "etcd-0.etcd-headless",
                "ETCD-1.etcd-headless.db.svc",
                "a.b.etcd-headless.db.svc",
                "etcd-1.etcd-headless",
            ],
            ["127.0.0.1", "::1"],
        )  # fmt: skip
        == ["a.b.etcd-headless.db.svc", "etcd-1.etcd-headless", "::1"]
    )
