"""The API without a socket: routing, the session and CSRF checks, read-only, answers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from etcd_views import EtcdViews
from fake_etcd import FakeEtcd
from routes import COOKIE, Api, HttpError, Request, Response, Route, route
from sessions import Authenticator


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Harness:
    def __init__(self, tmp_path: Path, read_only: bool = True, auth: bool = True):
        (tmp_path / "username").write_text("admin")
        (tmp_path / "password").write_text("s3cret")
        self.etcd = FakeEtcd({b"/app/a": b"1"})
        views = EtcdViews(lambda: self.etcd, ["http://etcd:2379"])  # type: ignore[arg-type,return-value]
        self.slept: list[float] = []
        self.api = Api(
            views, Authenticator(auth, str(tmp_path), 3600), read_only, "etcd-webui-login",
            sleep=self.slept.append,
        )  # fmt: skip
        self.cookie = ""
        self.csrf = ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        secure: bool = False,
    ) -> Response:
        found = route(method, path)
        assert isinstance(found, Route)
        all_headers = {"content-type": "application/json"}
        if self.cookie:
            all_headers["cookie"] = f"other=1; {COOKIE}={self.cookie}"
        all_headers |= headers or {}
        raw = json.dumps(body).encode() if body is not None else b""
        request = Request(method, path, query or {}, all_headers, raw, "10.0.0.9", secure)
        return self.api.handle(request, found)

    def login(self, password: str = "s3cret", secure: bool = False) -> Response:
        answer = self.request(
            "POST", "/api/login", {"username": "admin", "password": password}, secure=secure
        )
        if answer.status == 200:
            cookie = dict(answer.headers)["Set-Cookie"]
            self.cookie = cookie.split(";")[0].split("=", 1)[1]
            self.csrf = json.loads(answer.body)["csrf"]
        return answer


def body(response: Response) -> Any:
    return json.loads(response.body)


def test_routes_and_static_files() -> None:
    assert route("GET", "/api/cluster") == Route("cluster")
    assert route("PUT", "/api/key") == Route("put", csrf=True, write=True)
    assert route("GET", "/") == "index.html"
    assert route("GET", "/app.js") == "app.js"
    with pytest.raises(HttpError) as missing:
        route("GET", "/etc/passwd")
    assert (missing.value.status, missing.value.message) == (404, "/etc/passwd: no such page")
    with pytest.raises(HttpError) as wrong:
        route("POST", "/api/cluster")
    assert (wrong.value.status, wrong.value.message) == (405, "POST is not allowed on /api/cluster")
    with pytest.raises(HttpError):
        route("DELETE", "/index.html")


def test_every_api_route_but_login_needs_a_session(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    for method, path in [("GET", "/api/cluster"), ("GET", "/api/keys"), ("PUT", "/api/key")]:
        answer = ui.request(method, path)
        assert (answer.status, body(answer)) == (401, {"error": "log in first"})
    assert ui.request("GET", "/healthz").status == 200
    assert ui.etcd.calls == []  # nothing reached etcd


def test_login_sets_a_strict_http_only_cookie(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    answer = ui.login()
    assert answer.status == 200
    assert body(answer) | {"csrf": ""} == {
        "user": "admin", "csrf": "", "readOnly": True, "authEnabled": True, "expiresIn": 3600
    }  # fmt: skip
    cookie = dict(answer.headers)["Set-Cookie"]
    assert cookie.endswith("; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict")
    assert "Secure" not in cookie
    secure = Harness(tmp_path).login(secure=True)
    assert dict(secure.headers)["Set-Cookie"].endswith("; SameSite=Strict; Secure")
    assert "s3cret" not in answer.body.decode()


def test_a_wrong_password_is_refused_and_slowed_down(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    for _ in range(3):
        answer = ui.login("guess")
        assert (answer.status, body(answer)) == (401, {"error": "wrong user name or password"})
    assert ui.slept == [0.5, 1.0, 2.0]
    assert ui.login().status == 200


def test_reads_with_a_session(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    ui.login()
    answer = ui.request("GET", "/api/key", query={"key": b64("/app/a")})
    assert answer.status == 200
    assert body(answer)["value"]["text"] == "1"
    missing = ui.request("GET", "/api/key", query={"key": b64("/app/none")})
    assert (missing.status, body(missing)) == (404, {"error": "no such key"})
    bad = ui.request("GET", "/api/keys", query={"prefix": "%%%"})
    assert (bad.status, body(bad)) == (400, {"error": "prefix: not base64"})
    limit = ui.request("GET", "/api/keys", query={"limit": "ten"})
    assert (limit.status, body(limit)) == (400, {"error": "limit: 'ten' is not a whole number"})


def test_a_read_only_ui_refuses_writes(tmp_path: Path) -> None:
    ui = Harness(tmp_path, read_only=True)
    ui.login()
    put = {"key": b64("/app/a"), "value": b64("2")}
    answer = ui.request("PUT", "/api/key", put, headers={"x-csrf-token": ui.csrf})
    assert (answer.status, body(answer)) == (
        403,
        {"error": "this UI is read-only (webui.readOnly)"},
    )
    assert ui.etcd.data[b"/app/a"] == b"1"


def test_writes_need_the_sessions_csrf_token(tmp_path: Path) -> None:
    ui = Harness(tmp_path, read_only=False)
    ui.login()
    put = {"key": b64("/app/a"), "value": b64("2")}
    for headers in ({}, {"x-csrf-token": "forged"}):
        answer = ui.request("PUT", "/api/key", put, headers=headers)
        assert (answer.status, body(answer)) == (
            403, {"error": "missing or wrong CSRF token: reload the page"}
        )  # fmt: skip
    answer = ui.request("PUT", "/api/key", put, headers={"x-csrf-token": ui.csrf})
    assert (answer.status, body(answer)) == (200, {"revision": 7})
    assert ui.etcd.data[b"/app/a"] == b"2"
    plain = ui.request(
        "PUT", "/api/key", put, headers={"x-csrf-token": ui.csrf, "content-type": "text/plain"}
    )
    assert (plain.status, body(plain)) == (415, {"error": "send the body as application/json"})
    deleted = ui.request(
        "DELETE", "/api/key", query={"key": b64("/app/a")}, headers={"x-csrf-token": ui.csrf}
    )
    assert (deleted.status, body(deleted)) == (200, {"deleted": 1})


def test_logout_ends_the_session(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    ui.login()
    answer = ui.request("POST", "/api/logout", headers={"x-csrf-token": ui.csrf})
    assert answer.status == 200
    assert dict(answer.headers)["Set-Cookie"].startswith(f"{COOKIE}=; Path=/; Max-Age=0")
    assert ui.request("GET", "/api/cluster").status == 401


def test_without_a_login_secret_the_ui_says_how_to_create_it(tmp_path: Path) -> None:
    ui = Harness(tmp_path)
    (tmp_path / "password").unlink()
    answer = ui.request("GET", "/api/session")
    assert answer.status == 503
    assert body(answer)["error"].startswith(
        "no login is configured: create the Secret etcd-webui-login with the keys username and "
        "password"
    )


def test_with_login_turned_off_the_page_gets_an_anonymous_session(tmp_path: Path) -> None:
    ui = Harness(tmp_path, auth=False)
    answer = ui.request("GET", "/api/session")
    assert answer.status == 200
    assert body(answer)["user"] == "anonymous"
    assert dict(answer.headers)["Set-Cookie"].startswith(f"{COOKIE}=v1.")
    refused = ui.request("POST", "/api/login", {"username": "x", "password": "y"})
    assert refused.status == 400
