"""`etcd-chart pki`: a CA and the server, peer, client and agent certificates of an etcd release.

For clusters without cert-manager (the etcdadm way). Writes `ca.crt`, `ca.key`, `server.crt`,
`server.key`, `peer.crt`, `peer.key`, `client.crt`, `client.key`, `agent.crt`, `agent.key` into
`--out`, and with `--format secrets` also `secrets.yaml`: four `kubernetes.io/tls` Secrets
`F-server-tls`, `F-peer-tls`, `F-client-tls` and `F-agent-tls` (keys `tls.crt`, `tls.key`,
`ca.crt`), the names the chart's `tls.existingSecrets` expects.

Server and peer certificates name every member up to `--max-members` in every form it can be
reached by (`F-i`, `F-i.S`, `F-i.S.NS`, `F-i.S.NS.svc`, `F-i.S.NS.svc.D`), so scaling up needs
no new certificate. The server certificate also names the client and headless Services,
`localhost` and 127.0.0.1; it has the client auth usage too, because etcd's gRPC gateway
connects to its own listener with it. The client certificate's CN (`--client-cn`, default
`root`) is the etcd user it authenticates as when client-cert-auth is on. The member agent's
certificate has no CN and names the agent by a URI: once auth is on, etcd's JSON gateway, which
the agent uses, refuses client certificates with a CN, and the agent logs in with a password.

Idempotent: run again with the same inputs and nothing is rewritten (same bytes, same mtimes).
The CA is the one given (`--ca-cert`/`--ca-key`), else the one already in `--out`, else a new
one. An existing certificate that does not cover the requested names, does not chain to the CA,
has expired, or has another key type is an error naming the file; `--force-renew` replaces the
server, peer, client and agent certificates (and puts a given CA in place of the one in `--out`).
Private keys are never printed; every file is written with mode 0600.

Exit codes: 0 done, 1 invalid input or existing files that do not fit, 2 could not run (an
unreadable or unwritable file).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509 as cx509

from etcd_chart import x509
from etcd_chart.kubedns import service_names
from etcd_chart.yamlio import dump

DEFAULT_MAX_MEMBERS = 9  # the chart's tls.maxMembers default
# The agent's certificate has no CN: etcd's JSON gateway refuses one with a CN once auth is on.
LEAVES = ("server", "peer", "client", "agent")
SECRETS_FILE = "secrets.yaml"
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class PkiError(ValueError):
    """Inputs or existing files that do not fit; one message per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class PkiOptions:
    out: Path
    name: str = "etcd"
    namespace: str = "default"
    cluster_domain: str = "cluster.local"
    replicas: int = 3
    max_members: int | None = None  # default: DEFAULT_MAX_MEMBERS or replicas, the larger
    headless_service: str | None = None  # default: F-headless
    client_service: str | None = None  # default: F
    ca_cert: Path | None = None
    ca_key: Path | None = None
    key_algorithm: str = "ecdsa"
    key_size: int | None = None
    days: int = 365
    ca_days: int = 3650
    client_cn: str = "root"
    format: str = "files"
    force_renew: bool = False

    @property
    def members(self) -> int:
        return self.max_members or max(self.replicas, DEFAULT_MAX_MEMBERS)

    @property
    def headless(self) -> str:
        return self.headless_service or f"{self.name}-headless"

    @property
    def client(self) -> str:
        return self.client_service or self.name


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _service_names(service: str, options: PkiOptions) -> list[str]:
    return service_names(service, options.namespace, options.cluster_domain)


def member_names(options: PkiOptions) -> list[str]:
    """Every DNS name of every member up to the maximum member count."""
    names = []
    for ordinal in range(options.members):
        pod = f"{options.name}-{ordinal}"
        names.append(pod)
        names.extend(f"{pod}.{name}" for name in _service_names(options.headless, options))
    return names


def server_names(options: PkiOptions) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the server certificate."""
    dns = [
        *member_names(options),
        *_service_names(options.client, options),
        *_service_names(options.headless, options),
        "localhost",
    ]
    return _unique(dns), ["127.0.0.1"]


def peer_names(options: PkiOptions) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the peer certificate."""
    return _unique([*member_names(options), *_service_names(options.headless, options)]), []


def _usages(role: str, algorithm: str) -> tuple[str, ...]:
    # Key encipherment only means something for RSA key exchange.
    base = (
        ("digital signature", "key encipherment") if algorithm == "rsa" else ("digital signature",)
    )
    if role in ("client", "agent"):
        return (*base, "client auth")
    return (*base, "server auth", "client auth")


def agent_uri(options: PkiOptions) -> str:
    """The member agent's identity, as the chart's agent Certificate names it."""
    return f"spiffe://{options.cluster_domain}/ns/{options.namespace}/member-agent/{options.name}"


def leaf_request(role: str, options: PkiOptions) -> x509.CertificateRequest:
    if role == "server":
        dns, ips = server_names(options)
        common_name = f"{options.name}-server"
    elif role == "peer":
        dns, ips = peer_names(options)
        common_name = f"{options.name}-peer"
    elif role == "agent":
        return x509.CertificateRequest(
            uris=(agent_uri(options),),
            usages=_usages(role, options.key_algorithm),
            duration=timedelta(days=options.days),
        )
    else:
        dns, ips = [], []
        common_name = options.client_cn
    return x509.CertificateRequest(
        common_name=common_name,
        dns_names=tuple(dns),
        ip_addresses=tuple(ips),
        usages=_usages(role, options.key_algorithm),
        duration=timedelta(days=options.days),
    )


def check_options(options: PkiOptions) -> list[str]:
    problems = []
    for flag, value in (
        ("--name", options.name),
        ("--namespace", options.namespace),
        ("--headless-service", options.headless),
        ("--client-service", options.client),
    ):
        if not _LABEL_RE.match(value) or len(value) > 63:
            problems.append(
                f"{flag}: {value!r} is not a DNS label (lowercase letters, digits and '-', at most "
                "63 characters, starting and ending with a letter or digit)"
            )
    labels = options.cluster_domain.split(".")
    if not all(_LABEL_RE.match(label) and len(label) <= 63 for label in labels):
        problems.append(
            f"--cluster-domain: {options.cluster_domain!r} is not a DNS domain (for example "
            "cluster.local)"
        )
    if options.replicas < 1:
        problems.append(f"--replicas: {options.replicas} is less than 1")
    if options.max_members is not None and options.max_members < max(options.replicas, 1):
        problems.append(
            f"--max-members: {options.max_members} is less than --replicas {options.replicas}; "
            "the certificates must name every member the StatefulSet can have"
        )
    if len(f"{options.name}-{options.members - 1}") > 63:
        problems.append(f"--name: {options.name!r} is too long for member names (63 characters)")
    if options.days < 1:
        problems.append(f"--days: {options.days} is less than 1")
    if options.ca_days < 1:
        problems.append(f"--ca-days: {options.ca_days} is less than 1")
    if (options.ca_cert is None) != (options.ca_key is None):
        problems.append(
            "--ca-cert and --ca-key: give both (the CA certificate and its key) or none"
        )
    if options.key_algorithm not in x509.KEY_ALGORITHMS:
        problems.append(
            f"--key-algorithm: {options.key_algorithm!r} is not one of "
            f"{', '.join(x509.KEY_ALGORITHMS)}"
        )
    elif options.key_size is not None:
        if options.key_algorithm == "ed25519":
            problems.append("--key-size: Ed25519 keys have a fixed size; leave --key-size out")
        else:
            allowed = x509.RSA_SIZES if options.key_algorithm == "rsa" else tuple(x509.ECDSA_CURVES)
            if options.key_size not in allowed:
                problems.append(
                    f"--key-size: {options.key_size} is not a valid "
                    f"{options.key_algorithm.upper()} key size; "
                    f"use one of {', '.join(map(str, allowed))}"
                )
    if not options.client_cn or len(options.client_cn) > 64:
        problems.append("--client-cn: give a common name of 1 to 64 characters")
    if options.format not in ("files", "secrets"):
        problems.append(f"--format: {options.format!r} is not files or secrets")
    return problems


@dataclass
class Outcome:
    """What happened to one certificate and its key."""

    role: str  # ca, server, peer, client
    action: str  # created, kept, replaced
    cert: cx509.Certificate
    key_description: str


@dataclass
class PkiReport:
    out: Path
    outcomes: list[Outcome] = field(default_factory=list)
    secrets: str = ""  # "", "written", "kept"
    secret_names: list[str] = field(default_factory=list)


def _read(path: Path) -> bytes:
    return path.read_bytes()  # OSError propagates: could not run


def _load_pair(cert_path: Path, key_path: Path) -> tuple[list[cx509.Certificate], x509.PrivateKey]:
    certs = x509.load_certs(_read(cert_path), str(cert_path))
    key = x509.load_key(_read(key_path), str(key_path))
    return certs, key


def _check_leaf(
    role: str,
    cert_path: Path,
    key_path: Path,
    ca: cx509.Certificate,
    ca_path: Path,
    options: PkiOptions,
    now: datetime,
) -> tuple[list[str], cx509.Certificate | None, x509.PrivateKey | None]:
    """Problems with an existing certificate and key (empty when they can be kept)."""
    fix = "run again with --force-renew to replace it"
    try:
        certs, key = _load_pair(cert_path, key_path)
    except x509.X509Error as err:
        return [f"{err}; {fix}"], None, None
    cert = certs[0]
    problems = []
    if not x509.key_matches(cert, key):
        problems.append(f"{key_path}: is not the key of {cert_path}; {fix}")
    if not x509.issued_by(cert, ca):
        problems.append(f"{cert_path}: was not issued by the CA in {ca_path}; {fix}")
    request = leaf_request(role, options)
    missing = x509.missing_names(cert, request.dns_names, request.ip_addresses)
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        problems.append(
            f"{cert_path}: does not cover {len(missing)} requested name(s) ({shown}); {fix}"
        )
    if role == "client" and x509.common_name_of(cert) != options.client_cn:
        problems.append(
            f"{cert_path}: has CN {x509.common_name_of(cert)!r}, not --client-cn "
            f"{options.client_cn!r}; {fix}"
        )
    if role == "agent" and x509.common_name_of(cert):
        problems.append(
            f"{cert_path}: has CN {x509.common_name_of(cert)!r}; the agent's certificate must "
            f"have none (etcd's JSON gateway refuses a CN once auth is on); {fix}"
        )
    lacking = [
        usage
        for usage in request.usages
        if usage.endswith(" auth") and usage not in x509.usages_of(cert)
    ]
    if lacking:
        problems.append(f"{cert_path}: lacks the usage {', '.join(lacking)}; {fix}")
    if cert.not_valid_after_utc <= now:
        problems.append(f"{cert_path}: expired on {cert.not_valid_after_utc:%Y-%m-%d}; {fix}")
    algorithm, size = x509.key_algorithm(key)
    wanted_size = options.key_size or x509.DEFAULT_KEY_SIZES[options.key_algorithm]
    if algorithm != options.key_algorithm or (algorithm != "ed25519" and size != wanted_size):
        problems.append(
            f"{key_path}: is {x509.describe_key(key)}, not the requested "
            f"{x509.describe_algorithm(options.key_algorithm, options.key_size)}; {fix}"
        )
    return problems, cert, key


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def secrets_manifest(options: PkiOptions, files: dict[str, bytes]) -> str:
    """The `kubernetes.io/tls` Secrets for the chart's `tls.existingSecrets`."""
    documents = []
    for role in LEAVES:
        data = {
            "tls.crt": files[f"{role}.crt"],
            "tls.key": files[f"{role}.key"],
            "ca.crt": files["ca.crt"],
        }
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{options.name}-{role}-tls",
                "namespace": options.namespace,
                "labels": {
                    "app.kubernetes.io/name": "etcd",
                    "app.kubernetes.io/component": f"{role}-tls",
                    "app.kubernetes.io/managed-by": "etcd-chart-pki",
                },
            },
            "type": "kubernetes.io/tls",
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        documents.append(f"---\n{dump(secret)}")
    return "".join(documents)


def ensure_pki(options: PkiOptions, now: datetime | None = None) -> PkiReport:
    """Create or keep the CA and certificates in `options.out`. Raises PkiError for inputs or
    existing files that do not fit (nothing is written then), OSError for files it cannot read
    or write."""
    problems = check_options(options)
    if problems:
        raise PkiError(problems)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    out = options.out
    if out.exists() and not out.is_dir():
        raise PkiError([f"--out: {out} exists and is not a directory"])
    report = PkiReport(out=out)
    pending: dict[str, bytes] = {}  # file name -> new content

    # The CA.
    ca_crt, ca_key_path = out / "ca.crt", out / "ca.key"
    here: tuple[list[cx509.Certificate], x509.PrivateKey] | None = None
    if ca_crt.exists() or ca_key_path.exists():
        for present, absent in ((ca_crt, ca_key_path), (ca_key_path, ca_crt)):
            if present.exists() and not absent.exists():
                problems.append(
                    f"{absent}: missing while {present} exists; put the CA's other half back, or "
                    "give the CA with --ca-cert and --ca-key"
                )
        if not problems:
            try:
                here = _load_pair(ca_crt, ca_key_path)
            except x509.X509Error as err:
                problems.append(str(err))
            else:
                if not x509.key_matches(here[0][0], here[1]):
                    problems.append(
                        f"{ca_key_path}: is not the key of {ca_crt}; put the CA's own key there, "
                        "or move both away to start a new CA"
                    )
                elif not x509.is_ca(here[0][0]):
                    problems.append(f"{ca_crt}: is not a CA certificate (CA:FALSE)")
    given: tuple[list[cx509.Certificate], x509.PrivateKey] | None = None
    if options.ca_cert is not None and options.ca_key is not None:
        try:
            given = _load_pair(options.ca_cert, options.ca_key)
        except x509.X509Error as err:
            problems.append(f"--ca-cert/--ca-key: {err}")
        else:
            if not x509.key_matches(given[0][0], given[1]):
                problems.append(
                    f"--ca-key: {options.ca_key} is not the key of --ca-cert {options.ca_cert}; "
                    "give the private key that belongs to the CA certificate"
                )
            elif not x509.is_ca(given[0][0]):
                problems.append(
                    f"--ca-cert: {options.ca_cert} is not a CA certificate (CA:FALSE); give a CA "
                    "certificate"
                )
    if problems:
        raise PkiError(problems)

    if given is not None:
        ca_certs, ca_key = given
        if here is not None and x509.fingerprint(here[0][0]) == x509.fingerprint(ca_certs[0]):
            ca_action = "kept"
        elif here is not None and not options.force_renew:
            raise PkiError(
                [
                    f"{ca_crt}: holds another CA than --ca-cert {options.ca_cert}; run again with "
                    "--force-renew to replace it (and every certificate it signed)"
                ]
            )
        else:
            ca_action = "replaced" if here is not None else "created"
            pending["ca.crt"] = b"".join(x509.cert_pem(cert) for cert in ca_certs)
            pending["ca.key"] = x509.key_pem(ca_key)
    elif here is not None:
        ca_certs, ca_key = here
        ca_action = "kept"
    else:
        ca_key = x509.generate_key(options.key_algorithm, options.key_size)
        ca_certs = [
            x509.self_signed_ca(
                f"{options.name}-ca", ca_key, timedelta(days=options.ca_days), moment
            )
        ]
        ca_action = "created"
        pending["ca.crt"] = x509.cert_pem(ca_certs[0])
        pending["ca.key"] = x509.key_pem(ca_key)
    ca = ca_certs[0]
    report.outcomes.append(Outcome("ca", ca_action, ca, x509.describe_key(ca_key)))

    # The leaves.
    for role in LEAVES:
        cert_path, key_path = out / f"{role}.crt", out / f"{role}.key"
        exists = cert_path.exists() or key_path.exists()
        if exists and not options.force_renew:
            if not (cert_path.exists() and key_path.exists()):
                present, absent = (
                    (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
                )
                problems.append(
                    f"{absent}: missing while {present} exists; run again with --force-renew to "
                    "replace both"
                )
                continue
            found, cert, key = _check_leaf(role, cert_path, key_path, ca, ca_crt, options, moment)
            problems.extend(found)
            if not found and cert is not None and key is not None:
                report.outcomes.append(Outcome(role, "kept", cert, x509.describe_key(key)))
            continue
        key = x509.generate_key(options.key_algorithm, options.key_size)
        cert = x509.sign_leaf(leaf_request(role, options), key, ca, ca_key, moment)
        pending[f"{role}.crt"] = x509.cert_pem(cert)
        pending[f"{role}.key"] = x509.key_pem(key)
        action = "replaced" if exists else "created"
        report.outcomes.append(Outcome(role, action, cert, x509.describe_key(key)))
    if problems:
        raise PkiError(problems)

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in pending.items():
        _write(out / name, data)

    secrets_path = out / SECRETS_FILE
    if options.format == "secrets" or secrets_path.exists():
        names = ["ca.crt", *(f"{role}.{ext}" for role in LEAVES for ext in ("crt", "key"))]
        files = {name: _read(out / name) for name in names}
        manifest = secrets_manifest(options, files).encode()
        if secrets_path.exists() and _read(secrets_path) == manifest:
            report.secrets = "kept"
        else:
            _write(secrets_path, manifest)
            report.secrets = "written"
        report.secret_names = [f"{options.name}-{role}-tls" for role in LEAVES]
    return report


def summary(report: PkiReport, options: PkiOptions) -> list[str]:
    """The lines printed on stdout: what was created or kept, never key material."""
    lines = [f"PKI in {report.out}:"]
    for outcome in report.outcomes:
        cert = outcome.cert
        files = f"{outcome.role}.crt, {outcome.role}.key"
        common_name = x509.common_name_of(cert)
        details = [outcome.key_description, f"CN {common_name}" if common_name else "no CN"]
        names = x509.names_of(cert)
        if names.dns_names:
            details.append(f"{len(names.dns_names)} DNS names")
        if names.ip_addresses:
            details.append(f"IP {', '.join(names.ip_addresses)}")
        details.append(f"valid until {cert.not_valid_after_utc:%Y-%m-%d}")
        lines.append(f"  {outcome.role:<7}{outcome.action:<9}{files:<24}{', '.join(details)}")
    lines.append(
        f"  server and peer certificates name members {options.name}-0 to "
        f"{options.name}-{options.members - 1} of namespace {options.namespace}"
    )
    if report.secrets:
        lines.append(
            f"  secrets {report.secrets:<9}{SECRETS_FILE:<24}{', '.join(report.secret_names)} "
            f"(kubectl apply -f {report.out / SECRETS_FILE})"
        )
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("--name", default="etcd", metavar="F", help="the release's fullname")
    parser.add_argument("--namespace", default="default", metavar="NS")
    parser.add_argument("--cluster-domain", default="cluster.local", metavar="D")
    parser.add_argument("--replicas", type=int, default=3, metavar="N")
    parser.add_argument(
        "--max-members",
        type=int,
        metavar="M",
        help=f"members the certificates name (default: {DEFAULT_MAX_MEMBERS} or --replicas)",
    )
    parser.add_argument("--headless-service", metavar="S", help="default: F-headless")
    parser.add_argument("--client-service", metavar="C", help="default: F")
    parser.add_argument("--ca-cert", type=Path, metavar="FILE", help="reuse this CA certificate")
    parser.add_argument("--ca-key", type=Path, metavar="FILE", help="the key of --ca-cert")
    parser.add_argument("--key-algorithm", default="ecdsa", choices=x509.KEY_ALGORITHMS)
    parser.add_argument(
        "--key-size", type=int, metavar="N", help="RSA bits or ECDSA curve size (default 2048/256)"
    )
    parser.add_argument("--days", type=int, default=365, metavar="N", help="leaf lifetime")
    parser.add_argument("--ca-days", type=int, default=3650, metavar="N", help="new CA lifetime")
    parser.add_argument("--client-cn", default="root", help="CN (etcd user) of the client cert")
    parser.add_argument("--format", default="files", choices=("files", "secrets"))
    parser.add_argument(
        "--force-renew",
        action="store_true",
        help="replace the server, peer, client and agent certificates even when they still fit",
    )


def options_from_args(args: argparse.Namespace) -> PkiOptions:
    return PkiOptions(
        out=args.out,
        name=args.name,
        namespace=args.namespace,
        cluster_domain=args.cluster_domain,
        replicas=args.replicas,
        max_members=args.max_members,
        headless_service=args.headless_service,
        client_service=args.client_service,
        ca_cert=args.ca_cert,
        ca_key=args.ca_key,
        key_algorithm=args.key_algorithm,
        key_size=args.key_size,
        days=args.days,
        ca_days=args.ca_days,
        client_cn=args.client_cn,
        format=args.format,
        force_renew=args.force_renew,
    )


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    try:
        report = ensure_pki(options)
    except PkiError as err:
        for problem in err.problems:
            print(f"etcd-chart pki: {problem}", file=sys.stderr)
        return 1
    except OSError as err:
        place = f"{err.filename}: " if err.filename else ""
        print(f"etcd-chart pki: {place}{err.strerror or err}", file=sys.stderr)
        return 2
    print("\n".join(summary(report, options)))
    return 0
