"""The UI's HTTP API without the socket: which route a request takes, what it needs (a session,
a CSRF token, a writable UI), and the answer. server.py puts this on http.server."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from etcd_client import EtcdError, Unreachable
from etcd_views import EtcdViews, NoEndpoint
from sessions import ANONYMOUS, Authenticator, SessionSigner, credentials_match

COOKIE = "etcd_webui_session"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 4 * 1024 * 1024
# etcd's gRPC code for "permission denied".
PERMISSION_DENIED_CODE = 7


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    session: bool = True  # needs a logged-in session
    csrf: bool = False  # needs the session's CSRF token in the X-CSRF-Token header
    write: bool = False  # changes etcd: refused by a read-only UI


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route("healthz", session=False),
    ("GET", "/readyz"): Route("readyz", session=False),
    ("GET", "/api/session"): Route("session", session=False),
    ("POST", "/api/login"): Route("login", session=False),
    ("POST", "/api/logout"): Route("logout", csrf=True),
    ("GET", "/api/cluster"): Route("cluster"),
    ("GET", "/api/keys"): Route("keys"),
    ("GET", "/api/key"): Route("key"),
    ("GET", "/api/history"): Route("history"),
    ("PUT", "/api/key"): Route("put", csrf=True, write=True),
    ("DELETE", "/api/key"): Route("delete", csrf=True, write=True),
}

STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    client: str = ""
    secure: bool = False  # came over TLS (X-Forwarded-Proto: https from a proxy in front)

    def cookie(self, name: str) -> str:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return ""


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json", headers or [])


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def route(method: str, path: str) -> Route | str:
    """The API route of a request, the static file name it asks for, or raises HttpError."""
    found = ROUTES.get((method, path))
    if found is not None:
        return found
    if path in STATIC_FILES:
        if method not in ("GET", "HEAD"):
            raise HttpError(405, f"{method} is not allowed on {path}")
        return STATIC_FILES[path][0]
    if any(p == path for _, p in ROUTES):
        raise HttpError(405, f"{method} is not allowed on {path}")
    raise HttpError(404, f"{path}: no such page")


def parse_query(text: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}


def key_param(value: str, name: str) -> bytes:
    """A key sent base64-encoded (etcd keys are bytes)."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise HttpError(400, f"{name}: not base64") from err


def int_param(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name, "")
    if not text:
        return default
    if not text.isdigit():
        raise HttpError(400, f"{name}: {text!r} is not a whole number")
    return int(text)


def json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HttpError(415, "send the body as application/json")
    try:
        data = json.loads(request.body or b"{}")
    except ValueError as err:
        raise HttpError(400, f"the body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    return data


class Api:
    """Answers the API routes; `views` reads and writes etcd."""

    def __init__(
        self,
        views: EtcdViews,
        auth: Authenticator,
        read_only: bool,
        login_secret: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.views = views
        self.auth = auth
        self.read_only = read_only
        self.login_secret = login_secret
        self._sleep = sleep

    def handle(self, request: Request, found: Route) -> Response:
        try:
            return self._dispatch(request, found)
        except HttpError as err:
            return error_response(err.status, err.message)
        except EtcdError as err:
            if err.code == PERMISSION_DENIED_CODE or "permission denied" in err.message:
                return error_response(403, f"etcd refused: {err.message}")
            return error_response(502, f"etcd answered: {err.message}")
        except (NoEndpoint, Unreachable) as err:
            return error_response(503, f"etcd cannot be reached: {err}")

    def _dispatch(self, request: Request, found: Route) -> Response:
        if not found.session:
            handler: Callable[[Request], Response] = getattr(self, f"_{found.name}")
            return handler(request)
        token = request.cookie(COOKIE)
        current = self.auth.session(token)
        if current is None:
            raise HttpError(401, "log in first")
        signer, session = current
        if found.csrf and not signer.csrf_ok(token, request.headers.get(CSRF_HEADER, "")):
            raise HttpError(403, "missing or wrong CSRF token: reload the page")
        if found.write and self.read_only:
            raise HttpError(403, "this UI is read-only (webui.readOnly)")
        if found.name == "logout":
            signer.revoke(session)
            return json_response(200, {"loggedOut": True}, [clear_cookie(request)])
        return self._views(found.name, request)

    def _views(self, name: str, request: Request) -> Response:
        query = request.query
        if name == "cluster":
            return json_response(200, self.views.cluster())
        if name == "keys":
            prefix = key_param(query.get("prefix", ""), "prefix")
            after = key_param(query.get("after", ""), "after")
            limit = int_param(query, "limit", 500)
            return json_response(200, self.views.keys(prefix, after, limit))
        if name == "key":
            key = key_param(query.get("key", ""), "key")
            found = self.views.key(key)
            if found is None:
                raise HttpError(404, "no such key")
            return json_response(200, found)
        if name == "history":
            key = key_param(query.get("key", ""), "key")
            limit = int_param(query, "limit", 20)
            return json_response(200, self.views.history(key, limit))
        if name == "put":
            body = json_body(request)
            key = key_param(str(body.get("key", "")), "key")
            if not key:
                raise HttpError(400, "key: required")
            value = key_param(str(body.get("value", "")), "value")
            return json_response(200, {"revision": self.views.put(key, value)})
        if name == "delete":
            key = key_param(query.get("key", ""), "key")
            if not key:
                raise HttpError(400, "key: required")
            return json_response(200, {"deleted": self.views.delete(key)})
        raise HttpError(404, "no such route")

    # -- routes without a session --------------------------------------------------------------
    def _healthz(self, request: Request) -> Response:
        return json_response(200, {"ok": True})

    def _readyz(self, request: Request) -> Response:
        try:
            self.views.ready()
        except (EtcdError, NoEndpoint, Unreachable) as err:
            return error_response(503, f"etcd does not answer: {err}")
        return json_response(200, {"ok": True})

    def _session_answer(self, signer: SessionSigner, token: str, user: str) -> dict[str, Any]:
        return {
            "user": user,
            "csrf": signer.csrf_token(token),
            "readOnly": self.read_only,
            "authEnabled": self.auth.enabled,
            "expiresIn": signer.ttl,
        }

    def _session(self, request: Request) -> Response:
        token = request.cookie(COOKIE)
        current = self.auth.session(token)
        if current is not None:
            signer, session = current
            return json_response(200, self._session_answer(signer, token, session.user))
        if self.auth.enabled:
            if self.auth.signer() is None:
                return error_response(503, self._no_login_message())
            raise HttpError(401, "log in first")
        anonymous = self.auth.signer()
        assert anonymous is not None
        token = anonymous.issue(ANONYMOUS)
        cookie = set_cookie(request, token, anonymous.ttl)
        return json_response(200, self._session_answer(anonymous, token, ANONYMOUS), [cookie])

    def _no_login_message(self) -> str:
        secret = self.login_secret or "the login Secret"
        return (
            f"no login is configured: create the Secret {secret} with the keys username and "
            "password (kubectl create secret generic ...), then try again"
        )

    def _login(self, request: Request) -> Response:
        if not self.auth.enabled:
            raise HttpError(400, "this UI has no login (webui.auth.enabled=false)")
        body = json_body(request)
        username, password = str(body.get("username", "")), str(body.get("password", ""))
        with self.auth.throttle.lock_for(request.client):
            login = self.auth.login()
            if login is None:
                return error_response(503, self._no_login_message())
            if not credentials_match(login, username, password):
                self._sleep(self.auth.throttle.failed(request.client))
                raise HttpError(401, "wrong user name or password")
            self.auth.throttle.succeeded(request.client)
        signer = self.auth.signer()
        if signer is None:
            return error_response(503, self._no_login_message())
        token = signer.issue(login.username)
        return json_response(
            200,
            self._session_answer(signer, token, login.username),
            [set_cookie(request, token, signer.ttl)],
        )


def set_cookie(request: Request, token: str, ttl: int) -> tuple[str, str]:
    secure = "; Secure" if request.secure else ""
    return (
        "Set-Cookie",
        f"{COOKIE}={token}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict{secure}",
    )


def clear_cookie(request: Request) -> tuple[str, str]:
    secure = "; Secure" if request.secure else ""
    return ("Set-Cookie", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}")
