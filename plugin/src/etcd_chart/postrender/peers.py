"""Peer lists (`initial-cluster`) for a member set, in the URL form its manifest uses.

The form comes from the member's own advertised peer URL: `$(HOSTNAME)` (or whichever variable
is bound to the pod name) is replaced by each pod name, every other `$(VAR)` is kept for
Kubernetes or the agent to expand. Without such a URL the standard stable DNS name is built:
`scheme://<pod>.<service>.<namespace>.svc.<cluster domain>:<peer port>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from etcd_chart.postrender.members import MemberSet, variables_in

DEFAULT_PEER_PORT = 2380
DEFAULT_CLIENT_PORT = 2379
_URL_RE = re.compile(r"^(?P<scheme>[^:/]+)://(?P<host>\[[^\]]*\]|[^:/]*)(?::(?P<port>[^/]*))?")
PEER_PORT_NAMES = ("peer", "etcd-server", "server", "etcd-peer")
TLS_PEER_KEYS = ("peer-cert-file", "peer-auto-tls")
TLS_CLIENT_KEYS = ("cert-file", "auto-tls")


@dataclass(frozen=True)
class Url:
    scheme: str
    host: str
    port: str  # may be "" or a $(VAR)

    @property
    def port_number(self) -> int | None:
        return int(self.port) if self.port.isdigit() else None


def parse_url(text: str) -> Url | None:
    match = _URL_RE.match(text.strip())
    if not match:
        return None
    return Url(match.group("scheme"), match.group("host"), match.group("port") or "")


def split_urls(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def env_values(member: MemberSet) -> dict[str, str]:
    """Environment variables of the etcd container whose value is known before the pod runs:
    plain `value:`s, and `fieldRef`s to the namespace or the pod template's labels/annotations."""
    values: dict[str, str] = {}
    container = member.container
    if not container:
        return values
    template = member.spec.get("template")
    metadata = template.get("metadata") if isinstance(template, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    for entry in container.get("env") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        name = str(entry["name"])
        if "value" in entry:
            values[name] = expand(str(entry["value"]), values)
            continue
        field_path = str(((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath"))
        if field_path == "metadata.namespace":
            values[name] = member.namespace
            continue
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
        if match:
            source = metadata.get(match.group(1))
            if isinstance(source, dict) and match.group(2) in source:
                values[name] = str(source[match.group(2)])
    return values


def expand(text: str, values: dict[str, str]) -> str:
    """Kubernetes-style `$(VAR)` expansion with known values; unknown ones stay as they are."""
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), text
    )


def peer_tls(member: MemberSet) -> bool:
    settings = member.settings
    if settings is None:
        return False
    return any(settings.get(key) not in (None, "", False, "false") for key in TLS_PEER_KEYS)


def _peer_urls(member: MemberSet) -> Iterator[Url]:
    """The member set's peer URLs, advertised ones first, with plain env vars expanded."""
    settings = member.settings
    if settings is None:
        return
    values = env_values(member)
    for key in ("initial-advertise-peer-urls", "listen-peer-urls"):
        for text in split_urls(settings.get(key)):
            url = parse_url(expand(text, values))
            if url:
                yield url


def peer_scheme(member: MemberSet) -> str:
    """`http` or `https` for peer traffic, from the URLs (expanding plain env vars) or TLS."""
    for url in _peer_urls(member):
        if url.scheme in ("http", "https"):
            return url.scheme
    return "https" if peer_tls(member) else "http"


def _named_port(member: MemberSet, names: tuple[str, ...]) -> int | None:
    for _, container in member.all_containers():
        for port in container.get("ports") or []:
            if isinstance(port, dict) and port.get("name") in names:
                number = port.get("containerPort")
                if isinstance(number, int):
                    return number
    return None


def peer_port(member: MemberSet) -> int:
    for url in _peer_urls(member):
        if url.port_number:
            return url.port_number
    return _named_port(member, PEER_PORT_NAMES) or DEFAULT_PEER_PORT


def url_form(member: MemberSet) -> list[str]:
    """The advertised peer URLs that name the pod through a pod-name variable."""
    if member.settings is None:
        return []
    urls = split_urls(member.settings.get("initial-advertise-peer-urls"))
    return [url for url in urls if set(variables_in(url)) & set(member.pod_name_vars)]


def advertised_peer_urls(member: MemberSet, pod: str) -> list[str]:
    """The peer URLs `pod` advertises as the manifest writes them (plain env vars expanded);
    empty when they do not name the pod through a pod-name variable."""
    values = env_values(member)
    urls = []
    for url in url_form(member):
        for variable in member.pod_name_vars:
            url = url.replace(f"$({variable})", pod)
        urls.append(expand(url, values))
    return urls


def member_peer_urls(member: MemberSet, pod: str, cluster_domain: str) -> list[str]:
    form = url_form(member)
    if form:
        urls = []
        for url in form:
            for variable in member.pod_name_vars:
                url = url.replace(f"$({variable})", pod)
            urls.append(url)
        return urls
    service = member.service_name or member.name
    scheme = peer_scheme(member)
    port = peer_port(member)
    return [f"{scheme}://{pod}.{service}.{member.namespace}.svc.{cluster_domain}:{port}"]


def initial_cluster(member: MemberSet, cluster_domain: str, count: int | None = None) -> str:
    """`name=url,...` for pods 0 .. replicas-1 (or `count`)."""
    entries = []
    for pod in member.pod_names(count):
        for url in member_peer_urls(member, pod, cluster_domain):
            entries.append(f"{pod}={url}")
    return ",".join(entries)


def member_hosts(member: MemberSet, key: str, count: int, cluster_domain: str) -> list[str]:
    """Host names members advertise in `key` (pods 0 .. count-1), as TLS names must cover them.

    Hosts that still hold a `$(VAR)` after the pod name is substituted are replaced by the
    stable DNS name, which is what such a variable names in every common manifest.
    """
    values = env_values(member)
    settings = member.settings
    templates = split_urls(settings.get(key)) if settings is not None else []
    templates = [t for t in templates if set(variables_in(t)) & set(member.pod_name_vars)]
    hosts: list[str] = []
    service = member.service_name or member.name
    for pod in member.pod_names(count):
        found = False
        for template in templates:
            text = template
            for variable in member.pod_name_vars:
                text = text.replace(f"$({variable})", pod)
            url = parse_url(expand(text, values))
            if url and not variables_in(url.host):
                hosts.append(url.host)
                found = True
        if not found:
            hosts.append(f"{pod}.{service}.{member.namespace}.svc.{cluster_domain}")
    return hosts
