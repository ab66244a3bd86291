"""Member URLs, names and IDs: pure string functions, no I/O."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Sequence


def url_host(ip: str) -> str:
    """The pod IP as a URL host: IPv6 in brackets, anything else unchanged."""
    bare = ip.strip().strip("[]")
    try:
        version = ipaddress.ip_address(bare).version
    except ValueError:
        return ip.strip()
    return f"[{bare}]" if version == 6 else bare


def split_urls(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_initial_cluster(text: str) -> list[tuple[str, str]]:
    """`a=http://x:2380,b=...` as (name, peer URL) pairs; ValueError names a bad entry."""
    pairs = []
    for item in split_urls(text):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"entry {item!r} is not name=peerURL")
        pairs.append((name.strip(), url.strip()))
    return pairs


def format_initial_cluster(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in pairs)


def normalize_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def url_hostname(url: str) -> str:
    return urllib.parse.urlsplit(url.strip()).hostname or ""


def pod_name_of(url: str) -> str:
    """The pod a member URL points at: the first DNS label of its host (an IP stays whole)."""
    host = url_hostname(url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".")[0]
    return host


def client_url_of(peer_url: str, scheme: str, port: int | str) -> str:
    """The client URL on the same host as a peer URL."""
    return f"{scheme}://{url_host(url_hostname(peer_url))}:{port}"


def ordinal_of(name: str, statefulset: str) -> int | None:
    """3 for `<statefulset>-3`, None for any other name."""
    match = re.fullmatch(re.escape(statefulset) + r"-([0-9]+)", name)
    return int(match.group(1)) if match else None


def hex_id(member_id: str) -> str:
    """etcd IDs travel as decimal strings in JSON; etcdctl and etcd's logs show them in hex."""
    try:
        return format(int(member_id), "x")
    except ValueError:
        return member_id
