"""Issue locally what cert-manager would issue for the Issuers and Certificates of a release.

The sandbox has no cert-manager, so this module reads the `cert-manager.io/v1` objects of a
rendered stream and produces the Secrets their Certificates name, with `cryptography`:

- Issuer and ClusterIssuer of type `selfSigned: {}` (the certificate signs itself and `ca.crt`
  is the certificate, as cert-manager does) and `ca: {secretName}` (signed by the CA in that
  Secret; `ca.crt` is the CA certificate). ACME, Vault and Venafi issuers need servers the
  sandbox does not have and are refused with a message that says so.
- Certificate: `secretName`, `issuerRef`, `isCA`, `commonName`, `subject`, `dnsNames`,
  `ipAddresses`, `uris`, `emailAddresses`, `usages`, `duration`, `renewBefore`,
  `renewBeforePercentage`, `privateKey` (`algorithm`, `size`, `encoding`, `rotationPolicy`).
- Order as the controller reaches it: a CA Issuer is usable once the Secret its
  `ca.secretName` names exists, whether a Certificate of the same batch issues it or the
  caller passes it in `existing_secrets`. A ClusterIssuer's Secret is looked up in the
  cluster resource namespace (cert-manager's `--cluster-resource-namespace`).

Issued material is kept under `store/<namespace>/<secretName>/` and reused on the next call
while the Certificate (and the CA that signed it) is unchanged and the certificate is not
within its renewal window, so a sandbox upgrade does not rotate certificates. Unlike
cert-manager, a leaf is also re-issued when its CA changed, so that it always chains to the
`ca.crt` next to it.

Every problem is collected and raised together as one `CertManagerError`; nothing is written
to the store unless the whole batch can be issued.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509 as cx509

from etcd_chart import x509

GROUP = "cert-manager.io"
API_VERSION = f"{GROUP}/v1"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")
SUPPORTED_ISSUER_TYPES = ("selfSigned", "ca")
UNSUPPORTED_ISSUER_TYPES = {
    "acme": ("an ACME", "it needs a reachable ACME server and solvers"),
    "vault": ("a Vault", "it needs a reachable Vault server"),
    "venafi": ("a Venafi", "it needs a reachable Venafi service"),
}
DEFAULT_DURATION = timedelta(hours=2160)
MINIMUM_DURATION = timedelta(hours=1)
MINIMUM_RENEW_BEFORE = timedelta(minutes=5)
DEFAULT_CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
# Spec fields that change when a certificate is renewed but not what it contains.
_NOT_IN_FINGERPRINT = (
    "renewBefore",
    "renewBeforePercentage",
    "secretTemplate",
    "revisionHistoryLimit",
    "keystores",
    "additionalOutputFormats",
)
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

SecretData = dict[str, bytes]
SecretKey = tuple[str, str]  # (namespace, name)


class CertManagerError(ValueError):
    """One or more Certificates cannot be issued; `problems` holds one message per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def parse_duration(text: str) -> timedelta:
    """A Go `time.ParseDuration` string (`2160h`, `1h30m`, `90m`, `1.5h`) as a timedelta."""
    value = text.strip()
    sign = 1.0
    if value[:1] in "+-" and value:
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return timedelta(0)
    if not value:
        raise ValueError(f"{text!r} is not a duration")
    seconds = 0.0
    position = 0
    for match in _DURATION_RE.finditer(value):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(value):
        raise ValueError(f"{text!r} is not a duration")
    return timedelta(seconds=sign * seconds)


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return (
        "".join(
            f"{amount}{unit}"
            for amount, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"))
            if amount
        )
        or "0s"
    )


@dataclass
class _Issuer:
    kind: str
    name: str
    namespace: str  # "" for a ClusterIssuer
    spec: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def types(self) -> list[str]:
        known = (*SUPPORTED_ISSUER_TYPES, *UNSUPPORTED_ISSUER_TYPES)
        return [name for name in known if name in self.spec and self.spec[name] is not None]


@dataclass
class _Plan:
    """One Certificate, checked and ready to issue."""

    name: str
    namespace: str
    secret_name: str
    spec: dict[str, Any]
    issuer: _Issuer
    request: x509.CertificateRequest
    key_algorithm: str
    key_size: int
    key_encoding: x509.KeyEncoding
    rotate_key: bool
    renew_before: timedelta | None
    renew_before_percentage: int | None
    ca_secret: SecretKey | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"Certificate/{self.name}"

    @property
    def secret(self) -> SecretKey:
        return (self.namespace, self.secret_name)


def _metadata(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("name") or ""), str(metadata.get("namespace") or "")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _subject(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    subject = spec.get("subject") or {}
    pairs: list[tuple[str, str]] = []
    for field_name in x509.SUBJECT_ATTRIBUTES:
        value = subject.get(field_name)
        if isinstance(value, str):
            pairs.append((field_name, value))
        else:
            pairs.extend((field_name, str(item)) for item in _as_list(value))
    return tuple(pairs)


def _plan_certificate(
    obj: Mapping[str, Any],
    namespace: str,
    issuers: Mapping[tuple[str, str, str], _Issuer],
    cluster_resource_namespace: str,
) -> tuple[_Plan | None, list[str]]:
    name, _ = _metadata(obj)
    ref = f"Certificate/{name or '?'}"
    problems: list[str] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None, [
            f"{ref}: spec: missing; a Certificate needs spec.secretName and spec.issuerRef"
        ]

    secret_name = spec.get("secretName")
    if not isinstance(secret_name, str) or not _NAME_RE.match(secret_name):
        problems.append(
            f"{ref}: spec.secretName: {secret_name!r} is not a Secret name; set it to the name of "
            "the Secret the certificate goes into (lowercase letters, digits, '-' and '.')"
        )

    issuer: _Issuer | None = None
    issuer_ref = spec.get("issuerRef")
    if not isinstance(issuer_ref, dict) or not issuer_ref.get("name"):
        problems.append(
            f"{ref}: spec.issuerRef.name: missing; name the Issuer or ClusterIssuer that signs it"
        )
    else:
        kind = issuer_ref.get("kind") or "Issuer"
        group = issuer_ref.get("group") or GROUP
        issuer_name = str(issuer_ref["name"])
        if group != GROUP:
            problems.append(
                f"{ref}: spec.issuerRef.group: {group!r} is an external issuer, which the local "
                f"cert-manager cannot run; use group {GROUP} (an Issuer or ClusterIssuer of type "
                "selfSigned or ca) or give the certificates as existing Secrets"
            )
        elif kind not in ISSUER_KINDS:
            problems.append(
                f"{ref}: spec.issuerRef.kind: {kind!r} is not an issuer kind of {GROUP}; "
                "use Issuer or ClusterIssuer"
            )
        else:
            issuer = issuers.get((kind, namespace if kind == "Issuer" else "", issuer_name))
            if issuer is None:
                where = f" in namespace {namespace}" if kind == "Issuer" else ""
                problems.append(
                    f"{ref}: spec.issuerRef.name: {kind} {issuer_name!r} does not exist{where}; "
                    f"add the {kind} to the release or point issuerRef at one that exists"
                )
            else:
                problems.extend(_issuer_problems(ref, issuer))

    duration = DEFAULT_DURATION
    if spec.get("duration") is not None:
        try:
            duration = parse_duration(str(spec["duration"]))
        except ValueError:
            problems.append(
                f"{ref}: spec.duration: {spec['duration']!r} is not a duration; write it the Go "
                "way, in h, m and s (for example 2160h for 90 days)"
            )
        else:
            if duration < MINIMUM_DURATION:
                problems.append(
                    f"{ref}: spec.duration: {spec['duration']!r} is shorter than the minimum of "
                    "1h; use 1h or more"
                )
    renew_before: timedelta | None = None
    if spec.get("renewBefore") is not None:
        try:
            renew_before = parse_duration(str(spec["renewBefore"]))
        except ValueError:
            problems.append(
                f"{ref}: spec.renewBefore: {spec['renewBefore']!r} is not a duration; write it the "
                "Go way, in h, m and s (for example 720h for 30 days)"
            )
        else:
            if renew_before < MINIMUM_RENEW_BEFORE:
                problems.append(
                    f"{ref}: spec.renewBefore: {spec['renewBefore']!r} is shorter than the minimum "
                    "of 5m; use 5m or more"
                )
            elif renew_before >= duration:
                problems.append(
                    f"{ref}: spec.renewBefore: {spec['renewBefore']!r} is not shorter than "
                    f"spec.duration ({_format_duration(duration)}); make it shorter, for example "
                    "a third of the duration"
                )
    percentage = spec.get("renewBeforePercentage")
    if percentage is not None and (not isinstance(percentage, int) or not 0 < percentage < 100):
        problems.append(
            f"{ref}: spec.renewBeforePercentage: {percentage!r} is not a whole number between 1 "
            "and 99"
        )
        percentage = None

    private_key = spec.get("privateKey") or {}
    algorithm = str(private_key.get("algorithm") or "RSA")
    key_algorithm = algorithm.lower()
    key_size = 0
    if key_algorithm not in x509.KEY_ALGORITHMS:
        problems.append(
            f"{ref}: spec.privateKey.algorithm: {algorithm!r} is not RSA, ECDSA or Ed25519"
        )
    else:
        key_size = int(private_key.get("size") or x509.DEFAULT_KEY_SIZES[key_algorithm])
        allowed: tuple[int, ...] = ()
        if key_algorithm == "rsa":
            allowed = x509.RSA_SIZES
        elif key_algorithm == "ecdsa":
            allowed = tuple(x509.ECDSA_CURVES)
        if allowed and key_size not in allowed:
            problems.append(
                f"{ref}: spec.privateKey.size: {key_size} is not a valid {algorithm} key size; "
                f"use one of {', '.join(map(str, allowed))}"
            )
    encoding = private_key.get("encoding") or "PKCS1"
    if encoding not in ("PKCS1", "PKCS8"):
        problems.append(f"{ref}: spec.privateKey.encoding: {encoding!r} is not PKCS1 or PKCS8")
        encoding = "PKCS1"
    rotation = private_key.get("rotationPolicy") or "Always"
    if rotation not in ("Always", "Never"):
        problems.append(
            f"{ref}: spec.privateKey.rotationPolicy: {rotation!r} is not Always or Never"
        )

    usages = [str(usage) for usage in _as_list(spec.get("usages"))] or list(x509.DEFAULT_USAGES)
    for index, usage in enumerate(usages):
        if usage not in x509.USAGES:
            problems.append(
                f"{ref}: spec.usages[{index}]: {usage!r} is not a cert-manager usage; "
                "use for example 'server auth', 'client auth', 'digital signature'"
            )
    is_ca = bool(spec.get("isCA"))
    if is_ca and "cert sign" not in usages:
        usages.append("cert sign")  # cert-manager adds it to every CA certificate

    ip_addresses = [str(ip) for ip in _as_list(spec.get("ipAddresses"))]
    for index, address in enumerate(ip_addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"{ref}: spec.ipAddresses[{index}]: {address!r} is not an IP address")
    common_name = str(spec.get("commonName") or "")
    if len(common_name.encode()) > 64:
        problems.append(
            f"{ref}: spec.commonName: longer than 64 bytes, the X.509 limit; put long names in "
            "spec.dnsNames"
        )
    dns_names = [str(name) for name in _as_list(spec.get("dnsNames"))]
    uris = [str(uri) for uri in _as_list(spec.get("uris"))]
    emails = [str(email) for email in _as_list(spec.get("emailAddresses"))]
    if not (common_name or dns_names or ip_addresses or uris or emails):
        problems.append(
            f"{ref}: spec: names nothing; set at least one of commonName, dnsNames, ipAddresses, "
            "uris or emailAddresses"
        )

    if problems or issuer is None:
        return None, problems
    request = x509.CertificateRequest(
        common_name=common_name,
        subject=_subject(spec),
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ip_addresses),
        uris=tuple(uris),
        email_addresses=tuple(emails),
        usages=tuple(usages),
        is_ca=is_ca,
        duration=duration,
    )
    plan = _Plan(
        name=name,
        namespace=namespace,
        secret_name=str(secret_name),
        spec=spec,
        issuer=issuer,
        request=request,
        key_algorithm=key_algorithm,
        key_size=key_size,
        key_encoding="PKCS8" if encoding == "PKCS8" else "PKCS1",
        rotate_key=rotation != "Never",
        renew_before=renew_before,
        renew_before_percentage=percentage,
    )
    if "ca" in issuer.types():
        ca_namespace = issuer.namespace or cluster_resource_namespace
        plan.ca_secret = (ca_namespace, str(issuer.spec["ca"]["secretName"]))
    return plan, []


def _issuer_problems(ref: str, issuer: _Issuer) -> list[str]:
    types = issuer.types()
    if not types:
        return [
            f"{ref}: spec.issuerRef.name: {issuer.ref} has no issuer type; give it "
            "`selfSigned: {}` or `ca: {secretName: ...}`"
        ]
    if len(types) > 1:
        return [
            f"{ref}: spec.issuerRef.name: {issuer.ref} sets {' and '.join(types)}; an issuer has "
            "exactly one type"
        ]
    kind = types[0]
    if kind in UNSUPPORTED_ISSUER_TYPES:
        label, reason = UNSUPPORTED_ISSUER_TYPES[kind]
        return [
            f"{ref}: spec.issuerRef.name: {issuer.ref} is {label} issuer (spec.{kind}), which the "
            f"local cert-manager does not support ({reason}); in the sandbox use a selfSigned or "
            "ca issuer, or give the certificates as existing Secrets"
        ]
    if kind == "ca":
        ca = issuer.spec.get("ca")
        if not isinstance(ca, dict) or not ca.get("secretName"):
            return [
                f"{ref}: spec.issuerRef.name: {issuer.ref} spec.ca.secretName is missing; name the "
                "Secret that holds the CA (tls.crt and tls.key)"
            ]
    return []


@dataclass
class _Ca:
    """The signing material of a CA Secret."""

    cert: cx509.Certificate
    key: x509.PrivateKey
    chain: list[cx509.Certificate]


def _load_ca(plan: _Plan, data: Mapping[str, bytes]) -> _Ca | str:
    """The CA of `plan`'s issuer from its Secret, or a message saying what is wrong with it."""
    assert plan.ca_secret is not None
    namespace, secret = plan.ca_secret
    where = (
        f"{plan.ref}: spec.issuerRef.name: {plan.issuer.ref} reads its CA from Secret "
        f"{namespace}/{secret} (spec.ca.secretName)"
    )
    for item in ("tls.crt", "tls.key"):
        if not data.get(item):
            return (
                f"{where}, which has no {item}; a CA issuer needs the CA certificate (tls.crt) and "
                "its private key (tls.key) in that Secret"
            )
    try:
        chain = x509.load_certs(data["tls.crt"], f"Secret {namespace}/{secret} key tls.crt")
        key = x509.load_key(data["tls.key"], f"Secret {namespace}/{secret} key tls.key")
    except x509.X509Error as err:
        return f"{where}: {err}"
    if not x509.key_matches(chain[0], key):
        return (
            f"{where}, whose tls.key does not belong to its tls.crt; put the CA's own key in "
            "tls.key"
        )
    if not x509.is_ca(chain[0]):
        return (
            f"{where}, whose tls.crt is not a CA certificate (basic constraints CA:FALSE); issue "
            "it with isCA: true"
        )
    return _Ca(cert=chain[0], key=key, chain=chain)


def _fingerprint(plan: _Plan, ca: _Ca | None) -> str:
    spec = {key: value for key, value in plan.spec.items() if key not in _NOT_IN_FINGERPRINT}
    private_key = dict(spec.get("privateKey") or {})
    private_key.pop("rotationPolicy", None)
    spec["privateKey"] = private_key
    identity = {
        "spec": spec,
        "issuer": [plan.issuer.kind, plan.issuer.name, plan.issuer.spec],
        "ca": x509.fingerprint(ca.cert) if ca else "",
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _renew_before(plan: _Plan, cert: cx509.Certificate) -> timedelta:
    """How long before expiry cert-manager would renew (a third of the lifetime by default)."""
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if plan.renew_before is not None and plan.renew_before < lifetime:
        return plan.renew_before
    if plan.renew_before_percentage is not None:
        return lifetime * plan.renew_before_percentage / 100
    return lifetime / 3


@dataclass
class _Stored:
    data: SecretData
    fingerprint: str
    cert: cx509.Certificate
    key: x509.PrivateKey


def _read_stored(directory: Path) -> _Stored | None:
    try:
        data = {name: (directory / name).read_bytes() for name in ("tls.crt", "tls.key", "ca.crt")}
        fingerprint = json.loads((directory / "state.json").read_text())["fingerprint"]
        cert = x509.load_cert(data["tls.crt"])
        key = x509.load_key(data["tls.key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: issue afresh
    if not x509.key_matches(cert, key):
        return None
    return _Stored(data=data, fingerprint=str(fingerprint), cert=cert, key=key)


def _issue(plan: _Plan, ca: _Ca | None, stored: _Stored | None, now: datetime) -> SecretData:
    key: x509.PrivateKey | None = None
    if not plan.rotate_key and stored is not None:
        algorithm, size = x509.key_algorithm(stored.key)
        wanted_size = 0 if plan.key_algorithm == "ed25519" else plan.key_size
        if (algorithm, size) == (plan.key_algorithm, wanted_size):
            key = stored.key
    if key is None:
        key = x509.generate_key(plan.key_algorithm, plan.key_size or None)
    if ca is None:
        cert = x509.issue(plan.request, key.public_key(), key, None, now)
        chain_pem = ca_pem = x509.cert_pem(cert)
    else:
        cert = x509.issue(plan.request, key.public_key(), ca.key, ca.cert, now)
        chain = [cert, *ca.chain]
        if x509.is_self_signed(chain[-1]):
            root, chain = chain[-1], chain[:-1]
        else:
            root = chain[-1]
        chain_pem = b"".join(x509.cert_pem(item) for item in chain)
        ca_pem = x509.cert_pem(root)
    return {"tls.crt": chain_pem, "tls.key": x509.key_pem(key, plan.key_encoding), "ca.crt": ca_pem}


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def issue_certificates(
    objects: Sequence[Mapping[str, Any]],
    store: Path,
    now: datetime | None = None,
    existing_secrets: Mapping[SecretKey, Mapping[str, bytes | str]] | None = None,
    default_namespace: str = "default",
    cluster_resource_namespace: str = DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
) -> dict[SecretKey, SecretData]:
    """The Secret data (`tls.crt`, `tls.key`, `ca.crt`) of every Certificate in `objects`, keyed
    by (namespace, secretName). Objects without a namespace are in `default_namespace`.
    Raises CertManagerError listing every problem; then nothing is stored."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    problems: list[str] = []

    issuers: dict[tuple[str, str, str], _Issuer] = {}
    certificates: list[tuple[Mapping[str, Any], str]] = []
    for obj in objects:
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        if not api_version.startswith(f"{GROUP}/") or kind not in (*ISSUER_KINDS, "Certificate"):
            continue
        name, namespace = _metadata(obj)
        if api_version != API_VERSION:
            problems.append(
                f"{kind}/{name}: apiVersion: {api_version} is not served by current cert-manager; "
                f"use {API_VERSION}"
            )
            continue
        namespace = namespace or default_namespace
        if kind == "Certificate":
            certificates.append((obj, namespace))
            continue
        key = (kind, namespace if kind == "Issuer" else "", name)
        if key in issuers:
            problems.append(f"{kind}/{name}: defined twice; give each {kind} its own name")
        spec = obj.get("spec")
        issuers[key] = _Issuer(kind, name, key[1], spec if isinstance(spec, dict) else {})

    plans: list[_Plan] = []
    producers: dict[SecretKey, str] = {}
    seen: set[tuple[str, str]] = set()
    for obj, namespace in certificates:
        name, _ = _metadata(obj)
        if (namespace, name) in seen:
            problems.append(
                f"Certificate/{name}: defined twice; give each Certificate its own name"
            )
            continue
        seen.add((namespace, name))
        plan, found = _plan_certificate(obj, namespace, issuers, cluster_resource_namespace)
        problems.extend(found)
        if plan is None:
            continue
        if plan.secret in producers:
            problems.append(
                f"{plan.ref}: spec.secretName: Secret {plan.secret_name} is also written by "
                f"Certificate/{producers[plan.secret]}; give each Certificate its own Secret"
            )
            continue
        producers[plan.secret] = plan.name
        plans.append(plan)

    available: dict[SecretKey, Mapping[str, bytes]] = {
        key: {
            name: value.encode() if isinstance(value, str) else value
            for name, value in data.items()
        }
        for key, data in (existing_secrets or {}).items()
    }
    issued: dict[SecretKey, SecretData] = {}
    fingerprints: dict[SecretKey, str] = {}
    pending = list(plans)
    while pending:
        progressed = False
        for plan in list(pending):
            ca: _Ca | None = None
            if plan.ca_secret is not None:
                if plan.ca_secret not in available:
                    if plan.ca_secret in producers and any(
                        other.secret == plan.ca_secret for other in pending
                    ):
                        continue  # its CA Certificate has not been issued yet
                    namespace, secret = plan.ca_secret
                    problems.append(
                        f"{plan.ref}: spec.issuerRef.name: {plan.issuer.ref} reads its CA from "
                        f"Secret {namespace}/{secret} (spec.ca.secretName), which does not exist "
                        "and no Certificate of the release creates it; create that Secret (tls.crt "
                        "and tls.key) or add a Certificate with that secretName"
                    )
                    pending.remove(plan)
                    continue
                loaded = _load_ca(plan, available[plan.ca_secret])
                if isinstance(loaded, str):
                    problems.append(loaded)
                    pending.remove(plan)
                    continue
                ca = loaded
            fingerprint = _fingerprint(plan, ca)
            stored = _read_stored(store / plan.namespace / plan.secret_name)
            if (
                stored is not None
                and stored.fingerprint == fingerprint
                and moment < stored.cert.not_valid_after_utc - _renew_before(plan, stored.cert)
            ):
                data = stored.data
            else:
                data = _issue(plan, ca, stored, moment)
            issued[plan.secret] = data
            fingerprints[plan.secret] = fingerprint
            available[plan.secret] = data
            pending.remove(plan)
            progressed = True
        if not progressed and pending:
            for plan in pending:
                namespace, secret = plan.ca_secret or ("", "")
                problems.append(
                    f"{plan.ref}: spec.issuerRef.name: {plan.issuer.ref} waits for Secret "
                    f"{namespace}/{secret}, whose Certificate itself waits on this chain (a "
                    "cycle); sign the CA Certificate with a selfSigned issuer"
                )
            break

    if problems:
        raise CertManagerError(problems)
    for (namespace, secret), data in issued.items():
        directory = store / namespace / secret
        state = json.dumps({"fingerprint": fingerprints[(namespace, secret)]}).encode()
        for name, value in (*data.items(), ("state.json", state)):
            path = directory / name
            if not path.is_file() or path.read_bytes() != value:
                _write_private(path, value)
    return issued
