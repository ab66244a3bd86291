"""A background writer that keeps a ledger of acknowledged writes, for the end-to-end scenarios.

It writes numbered keys through etcd's JSON gateway (`/v3/kv/put`) as fast as the cluster answers,
rotating over the members' client URLs when one fails, and records every write the cluster
acknowledged. After a scenario, `verify()` reads everything back and returns what is missing: the
safety rule is that this list is empty. It also measures how long the cluster could not accept
writes (the longest gap between two acknowledged writes while the writer kept trying).

Members are reached by address, with the member's DNS name used for TLS verification, because the
pods' DNS names resolve only inside the sandbox's mount namespaces.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Endpoint:
    """One member's client endpoint: where to connect, and which name its certificate carries."""

    address: str
    port: int
    server_name: str = ""
    scheme: str = "http"


@dataclass(frozen=True)
class ClientTLS:
    ca_file: str
    cert_file: str
    key_file: str


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(endpoint.address, endpoint.port, timeout=timeout, context=context)
        self._server_name = endpoint.server_name or endpoint.address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


class EtcdGateway:
    """Minimal JSON-gateway client: enough for puts, range reads and member lists."""

    def __init__(
        self,
        tls: ClientTLS | None = None,
        timeout: float = 2.0,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.user = user  # (name, password) for a cluster with etcd authentication on
        self._tokens: dict[Endpoint, str] = {}
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.create_default_context(cafile=tls.ca_file)
            self.context.load_cert_chain(tls.cert_file, tls.key_file)

    def call(self, endpoint: Endpoint, path: str, body: dict[str, object]) -> dict[str, object]:
        try:
            return self._call(endpoint, path, body, self._token(endpoint, path))
        except OSError:
            self._tokens.pop(endpoint, None)  # an expired token is fetched again next time
            raise

    def _token(self, endpoint: Endpoint, path: str) -> str | None:
        if self.user is None or path == "/v3/auth/authenticate":
            return None
        if endpoint not in self._tokens:
            name, password = self.user
            answer = self._call(
                endpoint, "/v3/auth/authenticate", {"name": name, "password": password}, None
            )
            self._tokens[endpoint] = str(answer["token"])
        return self._tokens[endpoint]

    def _call(
        self, endpoint: Endpoint, path: str, body: dict[str, object], token: str | None
    ) -> dict[str, object]:
        connection: http.client.HTTPConnection
        if endpoint.scheme == "https":
            if self.context is None:
                raise ValueError("https endpoint without client TLS settings")
            connection = _TLSConnection(endpoint, self.context, self.timeout)
        else:
            connection = http.client.HTTPConnection(
                endpoint.address, endpoint.port, timeout=self.timeout
            )
        try:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = token
            connection.request("POST", path, json.dumps(body), headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise OSError(
                f"{path} on {endpoint.address}: HTTP {response.status}: {payload[:200]!r}"
            )
        data: dict[str, object] = json.loads(payload or b"{}")
        return data

    def put(self, endpoint: Endpoint, key: str, value: str) -> None:
        self.call(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def range_prefix(self, endpoint: Endpoint, prefix: str) -> dict[str, str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        data = self.call(endpoint, "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        result: dict[str, str] = {}
        for kv in data.get("kvs", []) or []:  # type: ignore[union-attr]
            result[base64.b64decode(kv["key"]).decode()] = base64.b64decode(
                kv.get("value", "")
            ).decode()
        return result


@dataclass
class Ledger:
    """Writes `/ledger/<n>` keys in the background until stopped, bounded in count and time."""

    endpoints: list[Endpoint]
    tls: ClientTLS | None = None
    user: tuple[str, str] | None = None
    prefix: str = "/ledger/"
    max_writes: int = 200_000
    max_seconds: float = 600.0
    pause: float = 0.005
    acknowledged: list[int] = field(default_factory=list)
    failures: int = 0
    last_error: str = ""
    longest_outage: float = 0.0

    def __post_init__(self) -> None:
        self._gateway = EtcdGateway(self.tls, user=self.user)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._lock = threading.Lock()
        self._window_outage = 0.0

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        with self._lock:
            self.endpoints = list(endpoints)

    def take_outage(self) -> float:
        """The longest outage since the last call (or the start), and start measuring anew."""
        with self._lock:
            longest, self._window_outage = self._window_outage, 0.0
        return longest

    def start(self) -> Ledger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def __enter__(self) -> Ledger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        started = time.monotonic()
        last_ack = started
        turn = 0
        sequence = 0
        while not self._stop.is_set() and sequence < self.max_writes:
            now = time.monotonic()
            if now - started > self.max_seconds:
                break
            with self._lock:
                endpoints = list(self.endpoints)
            if not endpoints:
                self._stop.wait(0.05)
                continue
            endpoint = endpoints[turn % len(endpoints)]
            sequence += 1
            try:
                self._gateway.put(endpoint, f"{self.prefix}{sequence:08d}", str(sequence))
            except (OSError, ValueError, http.client.HTTPException) as err:
                self.failures += 1
                self.last_error = f"{type(err).__name__}: {err}"
                turn += 1
                self._note_gap(time.monotonic() - last_ack)
                self._stop.wait(0.05)
                continue
            acked = time.monotonic()
            self._note_gap(acked - last_ack)
            last_ack = acked
            self.acknowledged.append(sequence)
            self._stop.wait(self.pause)

    def _note_gap(self, seconds: float) -> None:
        with self._lock:
            self.longest_outage = max(self.longest_outage, seconds)
            self._window_outage = max(self._window_outage, seconds)

    def verify(self, endpoint: Endpoint | None = None) -> list[int]:
        """Acknowledged sequence numbers that are missing or wrong when read back."""
        errors: list[Exception] = []
        for candidate in [endpoint] if endpoint else self.endpoints:
            try:
                stored = self._gateway.range_prefix(candidate, self.prefix)
            except (OSError, ValueError, http.client.HTTPException) as err:
                errors.append(err)
                continue
            return [n for n in self.acknowledged if stored.get(f"{self.prefix}{n:08d}") != str(n)]
        raise AssertionError(f"no member answered the read-back: {errors}")


def endpoint_from_url(url: str, address: str) -> Endpoint:
    """The endpoint of a member advertising client URL `url` at pod address `address`."""
    parts = urlsplit(url)
    return Endpoint(
        address=address,
        port=parts.port or 2379,
        server_name=parts.hostname or "",
        scheme=parts.scheme,
    )
