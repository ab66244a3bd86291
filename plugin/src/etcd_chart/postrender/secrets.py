"""The TLS Secrets a member set mounts but the release does not issue, checked in the cluster.

Run only with a reachable cluster (`core.post_render` imports this module then, so offline runs
never load `cryptography`). A TLS Secret is a Secret volume that any container of the member
pods mounts under `/etc/etcd/tls/` (the chart's `server`, `peer`, `client` and `agent`) or that
holds the etcd settings' `cert-file` or `peer-cert-file`. Secrets that a cert-manager
Certificate of the stream issues are left to cert-manager (`checks.check_certificates` checks
their names); the others were made beforehand (the chart's `tls.source: existingSecrets`), so
they are read from the cluster, or from the stream when the release renders them itself.

For each such Secret, each problem is its own message at the StatefulSet volume that names it:
the Secret does not exist; `tls.crt`, `tls.key` or `ca.crt` is missing or does not parse;
`tls.key` is not the key of `tls.crt`; `tls.crt` is not signed by the CA in `ca.crt`; the
server and peer certificates do not name every member host up to the maximum member count;
a certificate has expired or expires within `EXPIRY_WARNING`; the member agent's certificate
has a CN (etcd's JSON gateway refuses client certificates with a CN once auth is on). Across
the Secrets of one member set: all signed by one CA. Key material is never printed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509 as cx509

from etcd_chart import x509
from etcd_chart.postrender import checks
from etcd_chart.postrender.members import Lookup, MemberSet
from etcd_chart.postrender.stream import full_body
from etcd_chart.report import Report
from etcd_chart.yamlio import Document

EXPIRY_WARNING = timedelta(days=7)
KEYS = ("tls.crt", "tls.key", "ca.crt")
ROLES = ("server", "peer", "client", "agent")
_WHAT = {
    "tls.crt": "the PEM certificate",
    "tls.key": "the certificate's unencrypted PEM private key",
    "ca.crt": "the PEM certificate of the CA that signed tls.crt",
}
_PKI = "as `etcd-chart pki --format secrets` writes them"


@dataclass
class TlsSecret:
    """One Secret the member pods read certificates from, and what was learnt about it."""

    name: str
    place: str  # the StatefulSet volume that names it
    roles: list[str] = field(default_factory=list)  # server, peer, client, agent (or none)
    url_keys: set[str] = field(default_factory=set)  # advertised URL settings it serves
    chain: list[cx509.Certificate] = field(default_factory=list)  # tls.crt, leaf first
    cas: list[cx509.Certificate] = field(default_factory=list)  # ca.crt
    signer: cx509.Certificate | None = None  # the certificate of ca.crt that signed tls.crt

    @property
    def order(self) -> int:
        return min((ROLES.index(role) for role in self.roles), default=len(ROLES))


def issued_secrets(documents: list[Document], namespace: str, default_ns: str) -> set[str]:
    """Names of the Secrets that cert-manager Certificates of the stream issue in `namespace`."""
    found = set()
    for document in documents:
        if document.kind != "Certificate":
            continue
        if not str(document.body.get("apiVersion", "")).startswith("cert-manager.io/"):
            continue
        if (document.namespace or default_ns) != namespace:
            continue
        secret = (document.body.get("spec") or {}).get("secretName")
        if secret:
            found.add(str(secret))
    return found


def tls_secrets(member: MemberSet, documents: list[Document], default_ns: str) -> list[TlsSecret]:
    """The member set's TLS Secrets that no Certificate of the stream issues, server first."""
    containers = [container for _, container in member.all_containers()]
    etcd_mounts = {mount.mount_path: mount.secret for mount in checks.secret_mounts(member)}
    served = checks.served_urls(member, etcd_mounts)
    issued = issued_secrets(documents, member.namespace, default_ns)
    found: dict[str, TlsSecret] = {}
    for mount in checks.secret_mounts(member, containers):
        under_root = (mount.mount_path + "/").startswith(checks.TLS_MOUNT_ROOT)
        if mount.secret in issued or not (under_root or mount.secret in served):
            continue
        secret = found.setdefault(
            mount.secret, TlsSecret(mount.secret, checks.place(member.statefulset, mount.field))
        )
        role = mount.mount_path[len(checks.TLS_MOUNT_ROOT) :] if under_root else ""
        if role in ROLES and role not in secret.roles:
            secret.roles.append(role)
        secret.url_keys |= served.get(mount.secret, set())
    for secret in found.values():
        if "advertise-client-urls" in secret.url_keys and "server" not in secret.roles:
            secret.roles.append("server")
        if "initial-advertise-peer-urls" in secret.url_keys and "peer" not in secret.roles:
            secret.roles.append("peer")
    return sorted(found.values(), key=lambda secret: secret.order)


def _secret_data(body: Any) -> dict[str, bytes | None]:
    """Key -> bytes (None when a value is not base64); `stringData` counts, as on create."""
    data: dict[str, bytes | None] = {}
    if not isinstance(body, dict):
        return data
    encoded, text = body.get("data"), body.get("stringData")
    for key, value in encoded.items() if isinstance(encoded, dict) else ():
        try:
            data[str(key)] = base64.b64decode(str(value or ""), validate=True)
        except (binascii.Error, ValueError):
            data[str(key)] = None
    for key, value in text.items() if isinstance(text, dict) else ():
        data[str(key)] = str(value or "").encode()
    return data


def _who(cert: cx509.Certificate) -> str:
    name = x509.common_name_of(cert)
    return f"CN {name}" if name else "no CN"


def _ca(cert: cx509.Certificate) -> str:
    return f"{_who(cert)}, SHA-256 {x509.fingerprint(cert)[:16]}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def signer_of(
    chain: list[cx509.Certificate], cas: list[cx509.Certificate]
) -> cx509.Certificate | None:
    """The certificate of `cas` that signed the leaf `chain[0]`, directly or through the
    intermediates that follow it in `chain`; None when none did."""
    current = chain[0]
    intermediates = list(chain[1:])
    while True:
        for ca in cas:
            if x509.issued_by(current, ca):
                return ca
        parent = next((cert for cert in intermediates if x509.issued_by(current, cert)), None)
        if parent is None:
            return None
        intermediates.remove(parent)
        current = parent


def _pki_command(member: MemberSet, count: int) -> str:
    return (
        f"etcd-chart pki --out DIR --name {member.name} --namespace {member.namespace} "
        f"--max-members {count} --format secrets"
    )


def check(
    member: MemberSet,
    documents: list[Document],
    default_ns: str,
    live: Lookup,
    cluster_domain: str,
    report: Report,
    now: datetime | None = None,
) -> None:
    """Report every problem of the member set's TLS Secrets; `live` reads the cluster."""
    found = tls_secrets(member, documents, default_ns)
    if not found:
        return
    moment = now or datetime.now(UTC)
    count = checks.max_members(member, report)
    in_stream = {
        document.name: document
        for document in documents
        if document.kind == "Secret" and (document.namespace or default_ns) == member.namespace
    }
    checked: list[TlsSecret] = []
    seen: set[str] = set()  # fingerprints of certificates whose lifetime was checked
    for secret in found:
        document = in_stream.get(secret.name) or live("Secret", member.namespace, secret.name)
        if document is None:
            report.add(
                secret.place,
                f"Secret {secret.name} does not exist in namespace {member.namespace}, so the "
                "member pods cannot start",
                f"create it before installing, e.g. with `{_pki_command(member, count)}` and "
                "`kubectl apply -f DIR/secrets.yaml`, or let cert-manager issue the certificates "
                "(tls.source: cert-manager)",
            )
            continue
        if _check_secret(secret, _secret_data(full_body(document)), report):
            checked.append(secret)
            _check_contents(member, secret, count, cluster_domain, report)
            _check_lifetimes(member, secret, count, moment, seen, report)
    _check_one_ca(member, checked, report)


def _check_secret(secret: TlsSecret, data: dict[str, bytes | None], report: Report) -> bool:
    """Keys present and parsing, key of the certificate, signed by ca.crt; True when all hold."""
    good = True
    for key in KEYS:
        if key in data and data[key] is None:
            report.add(
                secret.place,
                f"Secret {secret.name} key {key} is not base64",
                f"put {_WHAT[key]} there, base64-encoded under data (or as text under stringData)",
            )
            good = False
        elif not data.get(key):
            report.add(
                secret.place,
                f"Secret {secret.name} has no key {key}"
                if key not in data
                else f"Secret {secret.name} key {key} is empty",
                f"add {_WHAT[key]} as {key}; each TLS Secret needs tls.crt, tls.key and ca.crt, "
                f"{_PKI}",
            )
            good = False
    if not good:
        return False
    crt, key_pem, ca = (data[key] or b"" for key in KEYS)
    private_key = None
    try:
        secret.chain = x509.load_certs(crt, f"Secret {secret.name} key tls.crt")
    except x509.X509Error as err:
        report.add(secret.place, str(err), f"put {_WHAT['tls.crt']} there")
        good = False
    try:
        private_key = x509.load_key(key_pem, f"Secret {secret.name} key tls.key")
    except x509.X509Error as err:
        report.add(secret.place, str(err), f"put {_WHAT['tls.key']} there")
        good = False
    try:
        secret.cas = x509.load_certs(ca, f"Secret {secret.name} key ca.crt")
    except x509.X509Error as err:
        report.add(secret.place, str(err), f"put {_WHAT['ca.crt']} there")
        good = False
    if (
        secret.chain
        and private_key is not None
        and not x509.key_matches(secret.chain[0], private_key)
    ):
        report.add(
            secret.place,
            f"Secret {secret.name}: tls.key is not the private key of tls.crt "
            f"({_who(secret.chain[0])})",
            "put the key tls.crt was issued for into tls.key, or issue a new certificate for "
            "this key",
        )
        good = False
    if secret.chain and secret.cas:
        secret.signer = signer_of(secret.chain, secret.cas)
        if secret.signer is None:
            report.add(
                secret.place,
                f"Secret {secret.name}: tls.crt ({_who(secret.chain[0])}) is not signed by the CA "
                f"in ca.crt ({', '.join(_ca(cert) for cert in secret.cas)})",
                "put the CA that signed tls.crt into ca.crt, or issue tls.crt from the CA in "
                "ca.crt (a CA of the same name from another `etcd-chart pki` run is another CA)",
            )
            good = False
    return good


def _check_contents(
    member: MemberSet, secret: TlsSecret, count: int, cluster_domain: str, report: Report
) -> None:
    leaf = secret.chain[0]
    if "agent" in secret.roles and x509.common_name_of(leaf):
        report.add(
            secret.place,
            f"Secret {secret.name}: the member agent's certificate (tls.crt) has CN "
            f"{x509.common_name_of(leaf)!r}; etcd's JSON gateway refuses client certificates "
            "with a CN once auth is on, so the agent could not log in",
            "issue the agent certificate without a common name, with a URI name only, as "
            "`etcd-chart pki` and the chart's cert-manager Certificate do",
        )
    if not secret.url_keys:
        return
    names = x509.names_of(leaf)
    missing = checks.uncovered(
        member, secret.url_keys, [*names.dns_names, *names.ip_addresses], count, cluster_domain
    )
    if missing:
        report.add(
            secret.place,
            f"the certificate in Secret {secret.name}, used by StatefulSet/{member.name}, does not "
            f"cover {checks.shortened(missing)} (members up to {count})",
            f"issue it again for every member, e.g. `{_pki_command(member, count)} --force-renew` "
            "with DIR holding its CA (or name a wildcard for the headless Service domain); "
            + checks.max_members_fix(member),
        )


def _check_lifetimes(
    member: MemberSet,
    secret: TlsSecret,
    count: int,
    now: datetime,
    seen: set[str],
    report: Report,
) -> None:
    """Each certificate once per member set: a CA shared by every Secret is reported once."""
    entries = [("tls.crt", position, cert) for position, cert in enumerate(secret.chain)]
    entries += [("ca.crt", position, cert) for position, cert in enumerate(secret.cas)]
    for key, position, cert in entries:
        fingerprint = x509.fingerprint(cert)
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        expires = cert.not_valid_after_utc
        if expires > now + EXPIRY_WARNING:
            continue
        where = key if position == 0 else f"{key} (certificate {position + 1})"
        is_ca = key == "ca.crt" or position > 0
        what = f"the {'CA ' if is_ca else ''}certificate in {where} ({_who(cert)})"
        if expires <= now:
            message = f"Secret {secret.name}: {what} expired on {_when(expires)}"
        else:
            message = (
                f"Secret {secret.name}: {what} expires on {_when(expires)}, within "
                f"{EXPIRY_WARNING.days} days"
            )
        fix = (
            "make a new CA, add it to every Secret's ca.crt next to the old one, and issue every "
            "certificate of the member set again from it"
            if is_ca
            else f"issue it again and update the Secret, e.g. `{_pki_command(member, count)} "
            "--force-renew` with DIR holding its CA, then `kubectl apply -f DIR/secrets.yaml`"
        )
        report.add(secret.place, message, fix)


def _trusts(secret: TlsSecret, other: TlsSecret) -> bool:
    """Whether `secret`'s ca.crt accepts `other`'s certificate."""
    return signer_of(other.chain, secret.cas) is not None


def _check_one_ca(member: MemberSet, checked: list[TlsSecret], report: Report) -> None:
    """Every Secret trusts the first one's certificate and the first one trusts theirs."""
    if len(checked) < 2:
        return
    first = checked[0]
    assert first.signer is not None
    for secret in checked[1:]:
        if _trusts(first, secret) and _trusts(secret, first):
            continue
        assert secret.signer is not None
        report.add(
            secret.place,
            f"Secret {secret.name} is signed by another CA ({_ca(secret.signer)}) than Secret "
            f"{first.name} ({_ca(first.signer)}); the members, etcdctl and the member agent of "
            f"StatefulSet/{member.name} check each other against one CA",
            "issue every certificate of the member set from one CA and put that CA into every "
            "Secret's ca.crt, e.g. from one `etcd-chart pki` directory (a CA of the same name "
            "from another run is another CA)",
        )
