"""X.509 helpers over `cryptography`, shared by `etcd-chart pki`, the post-renderer's checks of
TLS Secrets and the sandbox control plane's own PKI.

Keys of a chosen algorithm and size, certificates (self-signed or signed by a CA) with DNS and
IP names, key usages and a lifetime, PEM in and out, and the checks the callers need: does a
key belong to a certificate, was a certificate issued by a CA, which requested names does it
not cover. Usage names are cert-manager's (`server auth`, `digital signature`, ...).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
KeyEncoding = Literal["PKCS1", "PKCS8"]

KEY_ALGORITHMS = ("ecdsa", "rsa", "ed25519")
RSA_SIZES = (2048, 3072, 4096, 8192)
ECDSA_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
DEFAULT_KEY_SIZES = {"rsa": 2048, "ecdsa": 256, "ed25519": 0}
DEFAULT_USAGES = ("digital signature", "key encipherment")

# cert-manager's usage names, split into the key usage bits and the extended key usages.
KEY_USAGE_BITS: dict[str, str] = {
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
EXTENDED_USAGES: dict[str, ObjectIdentifier] = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}
USAGES = (*KEY_USAGE_BITS, *EXTENDED_USAGES)

# cert-manager's subject fields -> X.509 attribute types, in the order Go writes them.
SUBJECT_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "countries": NameOID.COUNTRY_NAME,
    "organizations": NameOID.ORGANIZATION_NAME,
    "organizationalUnits": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "localities": NameOID.LOCALITY_NAME,
    "provinces": NameOID.STATE_OR_PROVINCE_NAME,
    "streetAddresses": NameOID.STREET_ADDRESS,
    "postalCodes": NameOID.POSTAL_CODE,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


class X509Error(ValueError):
    """Bad input for a key or certificate; the message says what and how to fix it."""


def generate_key(algorithm: str, size: int | None = None) -> PrivateKey:
    """A new private key. `size` is bits for RSA, the curve for ECDSA, ignored for Ed25519."""
    algorithm = algorithm.lower()
    if algorithm not in KEY_ALGORITHMS:
        raise X509Error(f"key algorithm {algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}")
    bits = size or DEFAULT_KEY_SIZES[algorithm]
    if algorithm == "rsa":
        if bits not in RSA_SIZES:
            raise X509Error(f"RSA key size {bits} is not one of {', '.join(map(str, RSA_SIZES))}")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if algorithm == "ecdsa":
        if bits not in ECDSA_CURVES:
            sizes = ", ".join(map(str, ECDSA_CURVES))
            raise X509Error(f"ECDSA key size {bits} is not one of {sizes}")
        return ec.generate_private_key(ECDSA_CURVES[bits]())
    return ed25519.Ed25519PrivateKey.generate()


def key_algorithm(key: PrivateKey | PublicKey) -> tuple[str, int]:
    """(`rsa`|`ecdsa`|`ed25519`, size in bits; 0 for Ed25519)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size
    return "ed25519", 0


def describe_key(key: PrivateKey | PublicKey) -> str:
    """`RSA 2048`, `ECDSA P-256` or `Ed25519`, for messages and summaries."""
    return describe_algorithm(*key_algorithm(key))


def describe_algorithm(algorithm: str, size: int | None = None) -> str:
    """`RSA 2048`, `ECDSA P-256` or `Ed25519` for an algorithm name and size (default size when
    None)."""
    algorithm = algorithm.lower()
    bits = size or DEFAULT_KEY_SIZES.get(algorithm, 0)
    if algorithm == "rsa":
        return f"RSA {bits}"
    if algorithm == "ecdsa":
        return f"ECDSA P-{bits}"
    return "Ed25519"


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The digest cert-manager pairs with the signer's key (none for Ed25519)."""
    algorithm, size = key_algorithm(key)
    if algorithm == "ed25519":
        return None
    if (algorithm == "rsa" and size >= 4096) or (algorithm == "ecdsa" and size == 521):
        return hashes.SHA512()
    if (algorithm == "rsa" and size >= 3072) or (algorithm == "ecdsa" and size == 384):
        return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True)
class CertificateRequest:
    """What a certificate should say; every field in cert-manager's terms."""

    common_name: str = ""
    subject: tuple[tuple[str, str], ...] = ()  # (cert-manager subject field, value)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    usages: tuple[str, ...] = DEFAULT_USAGES
    is_ca: bool = False
    duration: timedelta = timedelta(days=90)


def subject_name(request: CertificateRequest) -> x509.Name:
    attributes = []
    for field_name, value in request.subject:
        if field_name not in SUBJECT_ATTRIBUTES:
            raise X509Error(
                f"subject field {field_name!r} is not one of {', '.join(SUBJECT_ATTRIBUTES)}"
            )
        attributes.append(x509.NameAttribute(SUBJECT_ATTRIBUTES[field_name], value))
    if request.common_name:
        if len(request.common_name) > 64:
            raise X509Error(f"common name {request.common_name!r} is longer than 64 characters")
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, request.common_name))
    return x509.Name(attributes)


def _general_names(request: CertificateRequest) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in request.dns_names]
    for address in request.ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError as err:
            raise X509Error(f"{address!r} is not an IP address") from err
    names.extend(x509.UniformResourceIdentifier(uri) for uri in request.uris)
    names.extend(x509.RFC822Name(email) for email in request.email_addresses)
    return names


def _key_usage(usages: Iterable[str]) -> x509.KeyUsage | None:
    bits = {KEY_USAGE_BITS[usage] for usage in usages if usage in KEY_USAGE_BITS}
    if not bits:
        return None
    flags = {name: name in bits for name in sorted(set(KEY_USAGE_BITS.values()))}
    if not flags["key_agreement"]:
        # RFC 5280: encipherOnly/decipherOnly are only meaningful with keyAgreement.
        flags["encipher_only"] = flags["decipher_only"] = False
    return x509.KeyUsage(**flags)


def check_usages(usages: Iterable[str]) -> list[str]:
    """The usage names that are not cert-manager usage names."""
    return [usage for usage in usages if usage not in USAGES]


def issue(
    request: CertificateRequest,
    public_key: PublicKey,
    signer_key: PrivateKey,
    issuer: x509.Certificate | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """A certificate for `public_key`, signed by `signer_key`: self-signed when `issuer` is None,
    else issued by `issuer` (whose key `signer_key` must be); its lifetime is capped at the
    issuer's, like cert-manager's CA issuer does."""
    unknown = check_usages(request.usages)
    if unknown:
        raise X509Error(
            f"unknown usages {', '.join(map(repr, unknown))}; known: {', '.join(USAGES)}"
        )
    if request.duration <= timedelta(0):
        raise X509Error("the certificate lifetime must be positive")
    not_before = (now or datetime.now(UTC)).replace(microsecond=0)
    not_after = not_before + request.duration
    subject = subject_name(request)
    if issuer is None:
        issuer_name = subject
    else:
        issuer_name = issuer.subject
        not_after = min(not_after, issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=request.is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    key_usage = _key_usage(request.usages)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    extended = sorted(
        {EXTENDED_USAGES[usage] for usage in request.usages if usage in EXTENDED_USAGES},
        key=lambda oid: oid.dotted_string,
    )
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    general_names = _general_names(request)
    if general_names:
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names), critical=not subject.rdns
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    return builder.sign(private_key=signer_key, algorithm=_signature_hash(signer_key))


def self_signed_ca(
    common_name: str,
    key: PrivateKey,
    duration: timedelta,
    now: datetime | None = None,
    organization: str = "",
) -> x509.Certificate:
    """A root CA certificate for `key`."""
    request = CertificateRequest(
        common_name=common_name,
        subject=(("organizations", organization),) if organization else (),
        usages=("digital signature", "cert sign", "crl sign"),
        is_ca=True,
        duration=duration,
    )
    return issue(request, key.public_key(), key, None, now)


def sign_leaf(
    request: CertificateRequest,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    now: datetime | None = None,
) -> x509.Certificate:
    """A certificate for `key` issued by the CA (`ca_cert`, `ca_key`)."""
    if not key_matches(ca_cert, ca_key):
        raise X509Error("the CA private key does not belong to the CA certificate")
    return issue(request, key.public_key(), ca_key, ca_cert, now)


# PEM


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, encoding: KeyEncoding = "PKCS8") -> bytes:
    """Unencrypted PEM; PKCS1 means the traditional form (`RSA/EC PRIVATE KEY`), which Ed25519
    does not have, so Ed25519 is always PKCS8 (as in cert-manager)."""
    if encoding == "PKCS1" and not isinstance(key, ed25519.Ed25519PrivateKey):
        private_format = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        private_format = serialization.PrivateFormat.PKCS8
    return key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    )


def load_certs(data: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order; `what` names the input in the message."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise X509Error(f"{what} holds no PEM certificate (no BEGIN CERTIFICATE line)")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise X509Error(f"{what} is not a valid PEM certificate ({err})") from err


def load_cert(data: bytes, what: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM bundle."""
    return load_certs(data, what)[0]


def load_key(data: bytes, what: str = "private key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as err:
        raise X509Error(f"{what} is encrypted; give it unencrypted") from err
    except (ValueError, UnsupportedAlgorithm) as err:
        raise X509Error(f"{what} is not a PEM private key ({err})") from err
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise X509Error(f"{what} is a {type(key).__name__}; use an RSA, ECDSA or Ed25519 key")
    return key


# Checks


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether `key` is the private key of `cert`."""
    return _spki(cert.public_key()) == _spki(key.public_key())  # type: ignore[arg-type]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` (issuer name and signature)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Names:
    """The subject alternative names of a certificate."""

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()


def names_of(cert: x509.Certificate) -> Names:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names()
    return Names(
        dns_names=tuple(san.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        email_addresses=tuple(san.get_values_for_type(x509.RFC822Name)),
    )


def common_name_of(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def usages_of(cert: x509.Certificate) -> list[str]:
    """cert-manager usage names of the key usage bits and extended key usages, sorted."""
    found: set[str] = set()
    try:
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None:
        for name, attribute in KEY_USAGE_BITS.items():
            if name == "signing":
                continue
            try:
                if getattr(key_usage, attribute):
                    found.add(name)
            except ValueError:  # encipher_only/decipher_only without key_agreement
                continue
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        extended = None
    if extended is not None:
        by_oid = {oid: name for name, oid in EXTENDED_USAGES.items() if name != "s/mime"}
        found.update(by_oid[oid] for oid in extended if oid in by_oid)
    return sorted(found)


def _dns_covered(name: str, patterns: Sequence[str]) -> bool:
    name = name.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def missing_names(
    cert: x509.Certificate, dns_names: Iterable[str] = (), ip_addresses: Iterable[str] = ()
) -> list[str]:
    """The requested names the certificate does not cover (wildcards count, one label deep)."""
    names = names_of(cert)
    have_ips = {ipaddress.ip_address(ip) for ip in names.ip_addresses}
    missing = [name for name in dns_names if not _dns_covered(name, names.dns_names)]
    missing += [ip for ip in ip_addresses if ipaddress.ip_address(ip) not in have_ips]
    return missing
