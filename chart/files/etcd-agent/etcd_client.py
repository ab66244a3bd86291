"""etcd's JSON gateway (grpc-gateway) over urllib: TLS with a client certificate, password
login once etcd asks for a user. Shared by the member agent and the Web UI (the Web UI's pod
mounts this file from the agent ConfigMap), so it imports only the standard library and
errors.py."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from errors import AgentError

HTTP_TIMEOUT = 2.0


def prefix_range_end(key: bytes) -> bytes:
    """The end of the range holding every key that starts with `key` (etcd's prefix rule)."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def verifying_context(cafile: str | None) -> ssl.SSLContext:
    """Chain and host name checked; OpenSSL's extra X509_STRICT checks (on by default since
    Python 3.13) are off, so the agent accepts the certificates etcd and etcdctl (Go) accept."""
    context = ssl.create_default_context(cafile=cafile)
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def client_tls_context(cacert: str, cert: str, key: str, https: bool) -> ssl.SSLContext | None:
    """None for plain HTTP without TLS files; else a verifying context with the client
    certificate when one is given."""
    if not (cacert or cert or https):
        return None
    try:
        context = verifying_context(cacert or None)
        if cert and key:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        files = ", ".join(f for f in (cacert, cert, key) if f)
        raise AgentError(f"cannot load the TLS files ({files}): {err}") from err
    return context


def read_secret_file(path: str) -> str:
    """A password from a mounted Secret, without the trailing newline `echo` leaves."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except OSError as err:
        raise AgentError(f"{path}: cannot read the password file: {err.strerror}") from err


GATEWAY_IGNORES_CN = "CommonName of client sending a request against gateway will be ignored"


class EtcdError(Exception):
    """etcd answered with an error."""

    def __init__(self, endpoint: str, path: str, status: int, code: int, message: str):
        super().__init__(f"{endpoint}{path}: {message} (HTTP {status}, code {code})")
        self.status = status
        self.code = code
        self.message = message

    @property
    def needs_auth(self) -> bool:
        if self.code == 3 and "user name is empty" in self.message:
            return True
        # Without a token the gateway's own connection speaks for the request, and etcd looks
        # up the CN of the member's server certificate as a user.
        if "user name not found" in self.message:
            return True
        # With auth on, the JSON gateway refuses to act on a client certificate's CN (etcd
        # answers 400 in plain text): a password login is the only way in through it.
        return self.code == 16 or GATEWAY_IGNORES_CN in self.message


class Unreachable(Exception):
    """No answer from an endpoint (refused, timed out, TLS failure, not JSON)."""

    def __init__(self, endpoint: str, reason: str):
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


def direct_opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    # No proxies from the environment: members and the API server are reached directly.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def failure_reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        reason = err.reason
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return str(reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


class EtcdClient:
    """POST JSON to etcd's gateway; logs in as `user` (the agent: root) once etcd asks for one."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        password_file: str = "",
        timeout: float = HTTP_TIMEOUT,
        user: str = "root",
    ):
        self._opener = direct_opener(context)
        self._password_file = password_file
        self._user = user
        self._token = ""
        self._lock = threading.Lock()
        self.timeout = timeout

    def call(
        self, endpoint: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return self._post(endpoint, path, body)
        except EtcdError as err:
            if not err.needs_auth or not self._password_file:
                raise
            self.authenticate(endpoint)
            return self._post(endpoint, path, body)

    def authenticate(self, endpoint: str) -> None:
        password = read_secret_file(self._password_file)
        answer = self._post(
            endpoint, "/v3/auth/authenticate", {"name": self._user, "password": password}, False
        )
        with self._lock:
            self._token = str(answer.get("token", ""))

    def health(self, endpoint: str, query: str = "") -> tuple[bool, str]:
        """GET /health (with `query`, e.g. `exclude=NOSPACE`): (healthy, reason)."""
        url = endpoint.rstrip("/") + "/health" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, method="GET")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                body = json.loads(err.read() or b"{}")
            except ValueError:
                return False, f"HTTP {err.code}"
        except (OSError, ValueError, http.client.HTTPException) as err:
            return False, failure_reason(err)
        healthy = str(body.get("health", "")).lower() == "true"
        return healthy, str(body.get("reason", "")) or ("healthy" if healthy else "unhealthy")

    def _post(
        self,
        endpoint: str,
        path: str,
        body: Mapping[str, Any] | None,
        with_token: bool = True,
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            endpoint.rstrip("/") + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with self._lock:
            token = self._token
        if with_token and token:
            request.add_header("Authorization", token)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                text = err.read()
            except OSError:
                text = b""
            try:
                error = json.loads(text or b"{}")
            except ValueError:
                error = {"message": text.decode(errors="replace").strip()[:300]}
            if not isinstance(error, dict):
                error = {}
            message = str(error.get("message") or error.get("error") or err.reason)
            raise EtcdError(endpoint, path, err.code, int(error.get("code", 0)), message) from None
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise Unreachable(endpoint, failure_reason(err)) from None
        if not isinstance(answer, dict):
            raise Unreachable(endpoint, "answer is not a JSON object")
        return answer
