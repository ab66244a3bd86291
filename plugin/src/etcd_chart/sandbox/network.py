"""Addresses and names: one /24 of 127.0.0.0/8 per state dir, one address per pod, one hosts file.

The /24 is derived from a hash of the state dir's path and taken only when no socket on this
machine listens on any address in it (read from /proc/net/tcp), so two sandboxes never share one.
`.1` is the Kubernetes API server, pods get `.10` upwards and keep their address while they exist
(a pod that comes back gets the same one, which makes logs easier to read; nothing relies on it).

All pods share this machine's loopback interface, where the kernel would give every connection
between them the source address 127.0.0.1. etcd's peer TLS check wants the remote address to be
one that a name in the peer's certificate resolves to, so each pod address gets a `local` /32
route with itself as the source (`ip route replace local A/32 dev lo src A table local`):
a connection to a pod leaves from that pod's own address, which the (shared) peer certificate's
names resolve to. The routes are removed when the address is released and by `down`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcd_chart.kubedns import service_names
from etcd_chart.sandbox.state import read_json, write_json

FIRST_POD_HOST = 10
LAST_POD_HOST = 254


class AddressInUse(RuntimeError):
    """An address or port the sandbox needs is taken by another process."""


def _listening_ipv4() -> set[str]:
    """Every IPv4 address some socket on this machine listens on (TCP LISTEN, or bound UDP)."""
    found: set[str] = set()
    for table, listen_state in (("/proc/net/tcp", "0A"), ("/proc/net/udp", "07")):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != listen_state:
                continue
            hex_address = parts[1].split(":")[0]
            raw = bytes.fromhex(hex_address)[::-1]
            found.add(socket.inet_ntoa(raw))
    return found


def subnet_candidates(state_dir: Path) -> Iterable[str]:
    """`127.X.Y` prefixes in a fixed order derived from the path (never 127.0.0)."""
    digest = int.from_bytes(hashlib.sha256(str(state_dir).encode()).digest()[:4], "big")
    start = digest % (255 * 256)
    for step in range(255 * 256):
        value = (start + step) % (255 * 256)
        x, y = 1 + value // 256, value % 256
        yield f"127.{x}.{y}"


def choose_subnet(state_dir: Path, taken: set[str] | None = None) -> str:
    """The first candidate /24 in which nothing listens."""
    listening = _listening_ipv4()
    busy_prefixes = {address.rsplit(".", 1)[0] for address in listening}
    for prefix in subnet_candidates(state_dir):
        if prefix in busy_prefixes or (taken and prefix in taken):
            continue
        return prefix
    raise AddressInUse("no free /24 left in 127.0.0.0/8")


def declared_ports(pod_spec: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(container, port, port name or number) of every TCP containerPort of a pod spec."""
    return [
        (str(c.get("name")), int(p["containerPort"]), str(p.get("name") or p["containerPort"]))
        for c in pod_spec.get("containers") or []
        for p in c.get("ports") or []
        if "containerPort" in p and str(p.get("protocol", "TCP")) == "TCP"
    ]


def check_pod_ports(pod_spec: dict[str, Any], address: str, pod: str) -> None:
    """AddressInUse when another process holds a port the pod's containers declare."""
    for container, port, port_name in declared_ports(pod_spec):
        check_port_free(address, port, f"Pod {pod} container {container} port {port_name}")


def check_port_free(address: str, port: int, what: str) -> None:
    """Raise AddressInUse when `address:port` cannot be bound (as etcd would bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise AddressInUse(
                    f"{what}: address {address}:{port} is already in use by another process"
                ) from err
            raise AddressInUse(f"{what}: cannot bind {address}:{port}: {err.strerror}") from err


@dataclass
class HostEntry:
    address: str
    names: list[str]


class Network:
    """The state dir's /24, the pods' addresses, and the hosts file every pod sees as /etc/hosts."""

    def __init__(
        self, record: Path, hosts_file: Path, subnet: str | None = None, routes: bool = True
    ):
        self.manage_routes = routes
        self.record = record
        self.hosts_file = hosts_file
        data = read_json(record, {}) or {}
        self.subnet: str = subnet or data.get("subnet", "")
        self.addresses: dict[str, str] = dict(data.get("addresses", {}))
        self.routes: list[str] = list(data.get("routes", []))
        self.route_error = ""
        # Held while `ip` changes a route: once remove_routes has run, no pod thread still
        # finishing during shutdown may add one back behind it.
        self._route_lock = threading.Lock()

    def choose(self, state_dir: Path) -> None:
        if not self.subnet:
            self.subnet = choose_subnet(state_dir)
        self.save()

    def save(self) -> None:
        write_json(
            self.record, {"subnet": self.subnet, "addresses": self.addresses, "routes": self.routes}
        )

    @property
    def api_address(self) -> str:
        return f"{self.subnet}.1"

    def address_for(self, key: str) -> str:
        """The address of pod `key` (`ns/name`), allocated on first use."""
        if key in self.addresses:
            if self.addresses[key] not in self.routes:
                self.add_route(self.addresses[key])
                self.save()
            return self.addresses[key]
        used = set(self.addresses.values())
        for host in range(FIRST_POD_HOST, LAST_POD_HOST + 1):
            candidate = f"{self.subnet}.{host}"
            if candidate not in used:
                self.addresses[key] = candidate
                self.add_route(candidate)
                self.save()
                return candidate
        raise AddressInUse(f"no address left in {self.subnet}.0/24 for pod {key}")

    def release(self, key: str) -> None:
        address = self.addresses.pop(key, None)
        if address is not None:
            self.remove_route(address)
            self.save()

    def add_route(self, address: str) -> None:
        with self._route_lock:
            self._add_route(address)

    def _add_route(self, address: str) -> None:
        if address in self.routes or not self.manage_routes:
            return
        result = _ip(
            "route",
            "replace",
            "local",
            f"{address}/32",
            "dev",
            "lo",
            "src",
            address,
            "table",
            "local",
        )
        if result:
            self.route_error = result
        else:
            self.routes.append(address)

    def remove_route(self, address: str) -> None:
        if address in self.routes:
            _delete_route(address)
            self.routes.remove(address)

    def remove_routes(self) -> None:
        """Every route of this sandbox's subnet: the recorded ones, and any a pod thread added
        while the daemon was shutting down (the subnet belongs to this state dir alone)."""
        with self._route_lock:
            managed, self.manage_routes = self.manage_routes, False
            for address in list(self.routes):
                self.remove_route(address)
            if self.subnet and managed:
                for address in subnet_routes(self.subnet):
                    _delete_route(address)
            self.save()

    def write_hosts(self, entries: list[HostEntry]) -> None:
        """Rewrite the hosts file in place (same inode): every bind mount of it sees the change."""
        text = render_hosts(entries)
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        fd = os.open(self.hosts_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            old = b""
            while chunk := os.read(fd, 65536):
                old += chunk
            if old == data:
                return
            if data.startswith(old):
                os.pwrite(fd, data[len(old) :], len(old))
            else:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def subnet_routes(subnet: str) -> list[str]:
    """Addresses of `subnet` (a.b.c) with a /32 route of their own in the local table."""
    try:
        result = subprocess.run(
            ["ip", "-o", "route", "show", "table", "local"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) > 1 and words[0] == "local" and words[1].startswith(f"{subnet}."):
            found.append(words[1].removesuffix("/32"))
    return found


def _delete_route(address: str) -> str:
    return _ip("route", "del", "local", f"{address}/32", "dev", "lo", "table", "local")


def _ip(*args: str) -> str:
    """Run `ip ARGS`; returns the error, or "" on success."""
    try:
        result = subprocess.run(
            ["ip", *args], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def render_hosts(entries: list[HostEntry]) -> str:
    lines = [
        "# written by etcd-chart sandbox: every pod and Service of this sandbox",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    seen: set[str] = {"localhost"}
    for entry in entries:
        names = [name for name in entry.names if name not in seen]
        seen.update(names)
        if names:
            lines.append(f"{entry.address}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def pod_names(pod: str, subdomain: str, namespace: str, domain: str) -> list[str]:
    if not subdomain:
        return [pod]
    return [*(f"{pod}.{name}" for name in service_names(subdomain, namespace, domain)), pod]
