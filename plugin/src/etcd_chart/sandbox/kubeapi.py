"""A small client of the Kubernetes API for the sandbox's own components (kubelet, provisioner):
JSON requests and watches over HTTPS with a client certificate, standard library only.

It knows the few paths those components use; it is not a general client (the post-renderer and
the tests use the `kubernetes` package or kubectl).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

MERGE_PATCH = "application/merge-patch+json"
# Seconds between retries of a request the API did not take: doubled each time, up to the cap.
RETRY_FIRST = 0.2
RETRY_CAP = 5.0


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class WatchExpired(RuntimeError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ca: Path
    cert: Path
    key: Path


class KubeApi:
    def __init__(self, credentials: Credentials, timeout: float = 10.0):
        self.credentials = credentials
        self.timeout = timeout
        parts = urlsplit(credentials.server)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self._context = ssl.create_default_context(cafile=str(credentials.ca))
        self._context.load_cert_chain(str(credentials.cert), str(credentials.key))

    def _connection(self, timeout: float | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self._context, timeout=timeout or self.timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """(status, parsed JSON answer); a connection error raises OSError."""
        if query:
            path = f"{path}?{urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        connection = self._connection()
        try:
            connection.request(method, path, body=data, headers=headers)
            answer = connection.getresponse()
            raw = answer.read()
        except http.client.HTTPException as err:
            raise OSError(f"{method} {path}: {err}") from err
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return answer.status, parsed

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """Like `request`, but a status of 300 or more raises ApiError."""
        status, answer = self.request(method, path, body, **kwargs)
        if status >= 300:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise ApiError(status, f"{method} {path}: {message}")
        return answer

    def get(self, path: str) -> dict[str, Any] | None:
        status, answer = self.request("GET", path)
        if status == 404:
            return None
        if status >= 300:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise ApiError(status, f"GET {path}: {message}")
        found: dict[str, Any] = answer
        return found

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", path, body, content_type=MERGE_PATCH)

    def watch(
        self, path: str, query: dict[str, Any], resource_version: str, stop: threading.Event
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after `resource_version` until the server ends the watch (about a minute) or
        `stop` is set; raises WatchExpired on 410."""
        params = {**query, "watch": "1", "resourceVersion": resource_version}
        params["timeoutSeconds"] = "60"
        params["allowWatchBookmarks"] = "true"
        connection = self._connection(timeout=75)
        try:
            connection.request("GET", f"{path}?{urlencode(params)}")
            answer = connection.getresponse()
            if answer.status == 410:
                raise WatchExpired(path)
            if answer.status >= 300:
                raise ApiError(answer.status, f"watch {path}: {answer.read()[:300]!r}")
            while not stop.is_set():
                line = answer.readline()
                if not line:
                    return
                event = json.loads(line)
                kind = str(event.get("type"))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(path)
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                yield kind, obj
        except http.client.HTTPException as err:
            raise OSError(f"watch {path}: {err}") from err
        finally:
            connection.close()


def informer(
    api: KubeApi,
    path: str,
    query: dict[str, Any],
    handle: Callable[[str, dict[str, Any]], None],
    stop: threading.Event,
    on_error: Callable[[str], None],
    on_synced: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> None:
    """List then watch `path` until `stop`, calling `handle(event, object)` for every change
    (a fresh list replays every object as ADDED and the vanished ones as DELETED).
    Runs in the caller's thread; errors are reported and retried."""
    known: dict[str, dict[str, Any]] = {}
    delay = RETRY_FIRST

    def deliver(kind: str, obj: dict[str, Any]) -> None:
        # A handler's bug must not end the watch: every later change would go unseen.
        try:
            handle(kind, obj)
        except Exception as err:  # noqa: BLE001
            name = (obj.get("metadata") or {}).get("name")
            on_error(f"{path}: handling {kind} {name}: {type(err).__name__}: {err}")

    while not stop.is_set():
        try:
            listing = api.call("GET", path, query=query)
            version = str(listing["metadata"]["resourceVersion"])
            fresh = {str(item["metadata"]["uid"]): item for item in listing.get("items") or []}
            for uid, obj in list(known.items()):
                if uid not in fresh:
                    deliver("DELETED", obj)
            for obj in fresh.values():
                deliver("ADDED", obj)
            known = fresh
            if on_synced is not None:
                on_synced(dict(known))
            delay = RETRY_FIRST
            while not stop.is_set():
                for kind, obj in api.watch(path, query, version, stop):
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    uid = str(obj["metadata"]["uid"])
                    if kind == "DELETED":
                        known.pop(uid, None)
                    else:
                        known[uid] = obj
                    deliver(kind, obj)
        except WatchExpired:
            continue
        except (OSError, ApiError, ValueError, KeyError) as err:
            if stop.is_set():
                return
            on_error(f"{path}: {err}")
            stop.wait(delay)
            delay = min(delay * 2, RETRY_CAP)
