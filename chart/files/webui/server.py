"""The UI's HTTP server (http.server, one thread per connection): security headers on every
answer, the static page from the program directory, the API from routes.py."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from client_source import ClientSource
from errors import AgentError
from etcd_client import EtcdClient
from etcd_views import EtcdViews
from routes import (
    MAX_BODY,
    STATIC_FILES,
    Api,
    HttpError,
    Request,
    Response,
    error_response,
    parse_query,
    route,
)
from sessions import Authenticator
from ui_settings import Settings

PROGRAM_DIR = os.path.dirname(os.path.abspath(__file__))

SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]


def static_file(name: str, content_type: str, directory: str = PROGRAM_DIR) -> Response:
    try:
        with open(os.path.join(directory, name), "rb") as handle:
            return Response(200, handle.read(), content_type)
    except OSError:
        return error_response(404, f"{name}: missing from the program directory")


class Handler(BaseHTTPRequestHandler):
    server_version = "etcd-webui"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    api: Api  # set on the subclass server.py makes

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            found = route(self.command, parts.path)
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                raise HttpError(413, f"the body is larger than {MAX_BODY} bytes")
            body = self.rfile.read(length) if length > 0 else b""
        except HttpError as err:
            self._send(error_response(err.status, err.message))
            return
        except ValueError:
            self._send(error_response(400, "Content-Length is not a number"))
            return
        if isinstance(found, str):
            self._send(static_file(found, STATIC_FILES[parts.path][1]))
            return
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_query(parts.query),
            headers=headers,
            body=body,
            client=self.client_address[0],
            secure=headers.get("x-forwarded-proto", "").lower() == "https",
        )
        self._send(self.api.handle(request, found))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in SECURITY_HEADERS + response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        # Probes would fill the log: only API calls and failures are logged.
        if self.path.startswith(("/healthz", "/readyz")) and args and str(args[1]) == "200":
            return
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True


def make_server(settings: Settings) -> Server:
    https = settings.endpoints[0].startswith("https:")

    def make_client(context: ssl.SSLContext | None) -> EtcdClient:
        user = settings.etcd_user or "root"
        return EtcdClient(context, settings.etcd_password_file, timeout=5.0, user=user)

    source = ClientSource(settings.cacert, settings.cert, settings.key, https, make_client)
    views = EtcdViews(source.get, settings.endpoints, bool(settings.etcd_password_file))
    auth = Authenticator(settings.auth_enabled, settings.login_dir, settings.session_ttl)
    api = Api(views, auth, settings.read_only, settings.login_secret)
    handler = type("BoundHandler", (Handler,), {"api": api})
    if ":" in settings.listen_host:
        Server.address_family = socket.AF_INET6
    return Server((settings.listen_host, settings.port), handler)


def serve_localhost(server: Server, port: int) -> None:
    """Also answer on 127.0.0.1, where `kubectl port-forward` connects inside the pod. Where that
    address is taken (the sandbox, whose pods share this machine's loopback) only the pod IP
    serves, as the log says."""
    try:
        local = Server(("127.0.0.1", port), server.RequestHandlerClass)
    except OSError as err:
        print(f"etcd-webui: not serving on 127.0.0.1:{port}: {err.strerror}", file=sys.stderr)
        return
    threading.Thread(target=local.serve_forever, name="localhost", daemon=True).start()


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
        server = make_server(settings)
    except (AgentError, OSError) as err:
        print(f"etcd-webui: {err}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, stop)
    if settings.listen_host not in ("0.0.0.0", "127.0.0.1", "::"):  # noqa: S104
        serve_localhost(server, settings.port)
    mode = "read-only" if settings.read_only else "read-write"
    login = "login required" if settings.auth_enabled else "no login"
    print(
        f"etcd-webui: serving on {settings.listen_host}:{settings.port} ({mode}, {login}), "
        f"etcd at {', '.join(settings.endpoints)}",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


def stop(signum: int, frame: object) -> None:
    """SIGTERM: leave serve_forever (the handler runs in the main thread, which serves)."""
    raise SystemExit(0)
