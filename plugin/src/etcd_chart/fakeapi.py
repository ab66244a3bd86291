"""A small fake Kubernetes API server: a stand-in, because no real API server runs here.

It is NOT Kubernetes. It is a generic in-memory object store that speaks enough of the
Kubernetes REST API, over HTTPS with a bearer token, for the `kubernetes` Python client and a
plain urllib client (the member agent) to run their real code paths against it:

- `/api/v1/namespaces/{ns}/{plural}[/{name}[/status]]` and
  `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]`, plus the cluster-scoped
  forms without `namespaces/{ns}` (a list there spans every namespace);
- GET (one object, or a list with `labelSelector` equality terms and `fieldSelector`
  `metadata.name`/`metadata.namespace`), POST (create, 409 AlreadyExists, `generateName`),
  PUT (replace, 409 Conflict on a stale `metadata.resourceVersion`), PATCH (JSON merge patch;
  strategic merge patch is treated as a merge patch; JSON patch), DELETE;
- `metadata.resourceVersion`, `uid`, `creationTimestamp` (and `generation`) filled in;
  errors are Kubernetes `Status` objects (400, 401, 404, 405, 409, 415).

No watches, no admission, no validation of object bodies, no controllers, no OpenAPI; discovery
(`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) lists a fixed set of common kinds, enough
for Helm and kubectl to map kinds to paths; `/version`, `/healthz`, `/readyz`, `/livez`. The store
can persist to a JSON file, so that a record written through it survives restarts of whatever runs
it.

Run it standalone with `python -m etcd_chart.fakeapi --state-file F --host H --port P
--ca-dir D --token-file T`; it prints one JSON line (url, ca_file, token_file) once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Kinds whose plural is not simply lower-case + "s"/"es"/"ies".
_IRREGULAR_PLURALS = {"endpoints": "endpoints"}
_KNOWN_KINDS = [
    "ConfigMap",
    "Secret",
    "Service",
    "Endpoints",
    "Pod",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "Namespace",
    "Event",
    "StatefulSet",
    "Deployment",
    "Job",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
    "Lease",
    "Certificate",
    "Issuer",
    "ClusterIssuer",
]


def plural_of(kind: str) -> str:
    """The REST resource name Kubernetes uses for a kind (`StatefulSet` -> `statefulsets`)."""
    lower = kind.lower()
    if lower in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[lower]
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"


_KIND_OF_PLURAL = {plural_of(kind): kind for kind in _KNOWN_KINDS}


# Discovery documents, so that Helm and kubectl can map kinds to paths: (group, version,
# [(plural, kind, namespaced)]). Objects of other kinds can still be stored and read.
_DISCOVERY: list[tuple[str, str, list[tuple[str, str, bool]]]] = [
    (
        "",
        "v1",
        [
            ("configmaps", "ConfigMap", True),
            ("secrets", "Secret", True),
            ("services", "Service", True),
            ("serviceaccounts", "ServiceAccount", True),
            ("pods", "Pod", True),
            ("persistentvolumeclaims", "PersistentVolumeClaim", True),
            ("endpoints", "Endpoints", True),
            ("events", "Event", True),
            ("namespaces", "Namespace", False),
        ],
    ),
    ("apps", "v1", [("statefulsets", "StatefulSet", True), ("deployments", "Deployment", True)]),
    ("batch", "v1", [("jobs", "Job", True)]),
    ("policy", "v1", [("poddisruptionbudgets", "PodDisruptionBudget", True)]),
    (
        "rbac.authorization.k8s.io",
        "v1",
        [
            ("roles", "Role", True),
            ("rolebindings", "RoleBinding", True),
            ("clusterroles", "ClusterRole", False),
            ("clusterrolebindings", "ClusterRoleBinding", False),
        ],
    ),
    (
        "networking.k8s.io",
        "v1",
        [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
    ),
    ("coordination.k8s.io", "v1", [("leases", "Lease", True)]),
    (
        "cert-manager.io",
        "v1",
        [
            ("certificates", "Certificate", True),
            ("issuers", "Issuer", True),
            ("clusterissuers", "ClusterIssuer", False),
        ],
    ),
]
_VERBS = ["create", "delete", "get", "list", "patch", "update"]


def discovery(path: str) -> dict[str, Any] | None:
    """The discovery document at `path` (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`), or None."""
    path = path.rstrip("/")
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = []
        for group, version, _ in _DISCOVERY:
            if not group:
                continue
            entry = {"groupVersion": f"{group}/{version}", "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for group, version, resources in _DISCOVERY:
        group_version = f"{group}/{version}" if group else version
        expected = f"/apis/{group_version}" if group else f"/api/{version}"
        if path == expected:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": _VERBS,
                    }
                    for plural, kind, namespaced in resources
                ],
            }
    return None


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class PatchError(ValueError):
    """A JSON patch that cannot be applied."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(target: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    document = copy.deepcopy(target)

    def parent_of(tokens: list[str]) -> tuple[Any, str]:
        node = document
        for token in tokens[:-1]:
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node, tokens[-1]

    def get(tokens: list[str]) -> Any:
        node = document
        for token in tokens:
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def remove(tokens: list[str]) -> Any:
        parent, last = parent_of(tokens)
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)

    def add(tokens: list[str], value: Any) -> None:
        nonlocal document
        if not tokens:
            document = value
            return
        parent, last = parent_of(tokens)
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError("every JSON patch operation needs 'op' and 'path'")
        op, tokens = operation["op"], _pointer(str(operation["path"]))
        try:
            if op == "add":
                add(tokens, copy.deepcopy(operation.get("value")))
            elif op == "remove":
                remove(tokens)
            elif op == "replace":
                remove(tokens)
                add(tokens, copy.deepcopy(operation.get("value")))
            elif op == "test":
                if get(tokens) != operation.get("value"):
                    raise PatchError(f"test failed at {operation['path']}")
            elif op in ("copy", "move"):
                source = _pointer(str(operation.get("from", "")))
                value = copy.deepcopy(get(source))
                if op == "move":
                    remove(source)
                add(tokens, value)
            else:
                raise PatchError(f"unknown JSON patch op {op!r}")
        except (KeyError, IndexError, ValueError, TypeError) as err:
            if isinstance(err, PatchError):
                raise
            raise PatchError(f"cannot apply {op} at {operation['path']}: {err}") from err
    return document


class ApiError(Exception):
    """An error the server answers with a Kubernetes `Status` object."""

    REASONS = {
        400: "BadRequest",
        401: "Unauthorized",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        415: "UnsupportedMediaType",
        422: "Invalid",
    }

    def __init__(
        self, code: int, message: str, reason: str = "", details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "InternalError")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


# Key of a stored object: (group, plural, namespace, name); "" namespace for cluster-scoped.
Key = tuple[str, str, str, str]


class ObjectStore:
    """Thread-safe in-memory objects with resource versions, optionally persisted as JSON."""

    def __init__(self, state_file: str | Path | None = None):
        self._lock = threading.RLock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._version = 0
        self._state_file = Path(state_file) if state_file else None
        if self._state_file and self._state_file.exists():
            self._load()

    def _load(self) -> None:
        assert self._state_file is not None
        data = json.loads(self._state_file.read_text() or "{}")
        self._version = int(data.get("resourceVersion", 0))
        for entry in data.get("objects", []):
            group, plural, namespace, name = entry["key"]
            self._objects[(group, plural, namespace, name)] = entry["object"]

    def _save(self) -> None:
        if not self._state_file:
            return
        data = {
            "resourceVersion": self._version,
            "objects": [
                {"key": list(key), "object": obj} for key, obj in sorted(self._objects.items())
            ],
        }
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._state_file.parent, prefix=".fakeapi-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._state_file)

    def _stamp(self, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        self._version += 1
        metadata = obj.setdefault("metadata", {})
        metadata["resourceVersion"] = str(self._version)
        if existing is None:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = _now()
            if "spec" in obj:
                metadata["generation"] = 1
        else:
            old_meta = existing.get("metadata", {})
            metadata["uid"] = old_meta.get("uid", str(uuid.uuid4()))
            metadata["creationTimestamp"] = old_meta.get("creationTimestamp", _now())
            generation = int(old_meta.get("generation", 1))
            if "spec" in obj and obj.get("spec") != existing.get("spec"):
                generation += 1
            if "spec" in obj or "generation" in old_meta:
                metadata["generation"] = generation

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, group: str, plural: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (g, p, ns, _), obj in sorted(self._objects.items())
                if g == group and p == plural and (not namespace or ns == namespace)
            ]
            return items, str(self._version)

    def create(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if key in self._objects:
                raise ApiError(
                    409,
                    f'{key[1]} "{key[3]}" already exists',
                    "AlreadyExists",
                    {"name": key[3], "group": key[0], "kind": key[1]},
                )
            stored = copy.deepcopy(obj)
            self._stamp(stored, None)
            self._objects[key] = stored
            self._save()
            return copy.deepcopy(stored)

    def replace(self, key: Key, obj: dict[str, Any], check_version: bool = True) -> dict[str, Any]:
        with self._lock:
            existing = self._objects.get(key)
            if existing is None:
                raise _not_found(key)
            wanted = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if check_version and wanted and wanted != existing["metadata"]["resourceVersion"]:
                raise _conflict(key)
            stored = copy.deepcopy(obj)
            self._stamp(stored, existing)
            self._objects[key] = stored
            self._save()
            return copy.deepcopy(stored)

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or overwrite without any checks (for seeding)."""
        with self._lock:
            stored = copy.deepcopy(obj)
            self._stamp(stored, self._objects.get(key))
            self._objects[key] = stored
            self._save()
            return copy.deepcopy(stored)

    def delete(self, key: Key) -> dict[str, Any]:
        with self._lock:
            existing = self._objects.pop(key, None)
            if existing is None:
                raise _not_found(key)
            self._version += 1
            self._save()
            return existing


def _not_found(key: Key) -> ApiError:
    group, plural, _, name = key
    return ApiError(
        404,
        f'{plural} "{name}" not found',
        "NotFound",
        {"name": name, "group": group, "kind": plural},
    )


def _conflict(key: Key) -> ApiError:
    group, plural, _, name = key
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        {"name": name, "group": group, "kind": plural},
    )


def _matches_labels(obj: dict[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _matches_fields(obj: dict[str, Any], selector: str) -> bool:
    metadata = obj.get("metadata") or {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        field_name = key.strip().removeprefix("metadata.")
        equal = str(metadata.get(field_name, "")) == value.strip()
        if equal == negate:
            return False
    return True


class _Route:
    """A parsed request path."""

    def __init__(self, group: str, version: str, namespace: str, plural: str, name: str, sub: str):
        self.group = group
        self.version = version
        self.namespace = namespace
        self.plural = plural
        self.name = name
        self.subresource = sub

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def key(self, name: str | None = None) -> Key:
        return (self.group, self.plural, self.namespace, name if name is not None else self.name)


def parse_path(path: str) -> _Route | None:
    parts = [unquote(part) for part in path.strip("/").split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    plural = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    sub = rest[2] if len(rest) == 3 else ""
    return _Route(group, version, namespace, plural, name, sub)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpsServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write("fakeapi: " + (format % args) + "\n")

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            raise ApiError(400, "request body is empty")
        try:
            return json.loads(raw)
        except ValueError as err:
            raise ApiError(400, f"request body is not valid JSON: {err}") from err

    def _dispatch(self, method: str) -> None:
        try:
            self._check_token()
            url = urlsplit(self.path)
            if method == "GET" and url.path in ("/healthz", "/readyz", "/livez"):
                self._send_text("ok")
                return
            if method == "GET" and url.path == "/version":
                self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fakeapi"})
                return
            if method == "GET":
                document = discovery(url.path)
                if document is not None:
                    self._send(200, document)
                    return
            route = parse_path(url.path)
            if route is None:
                raise ApiError(
                    404, f"the server could not find the requested resource ({url.path})"
                )
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            if query.get("watch") in ("true", "1"):
                raise ApiError(405, "watch is not supported by this fake API server")
            status, body = self.server.api.handle(method, route, query, self._body_if(method))
            self._send(status, body)
        except ApiError as err:
            self._send(err.code, err.status())

    def _body_if(self, method: str) -> Any:
        if method in ("POST", "PUT", "PATCH"):
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            body = self._body()
            return (content_type, body)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # DELETE options: ignored
        return None

    def _send_text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _check_token(self) -> None:
        expected = self.server.api.token
        header = self.headers.get("Authorization") or ""
        scheme, _, given = header.partition(" ")
        if not (scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), expected)):
            raise ApiError(401, "Unauthorized")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


class _Api:
    """The REST semantics over an ObjectStore, independent of HTTP."""

    def __init__(self, store: ObjectStore, token: str):
        self.store = store
        self.token = token

    def handle(
        self, method: str, route: _Route, query: dict[str, str], payload: Any
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            if route.name:
                obj = self.store.get(route.key())
                if obj is None:
                    raise _not_found(route.key())
                return 200, obj
            return 200, self._list(route, query)
        if method == "POST":
            if route.name:
                raise ApiError(405, "POST is only allowed on a collection")
            return 201, self._create(route, payload)
        if not route.name:
            raise ApiError(405, f"{method} needs an object name")
        if method == "PUT":
            return 200, self._replace(route, payload)
        if method == "PATCH":
            return 200, self._patch(route, payload)
        if method == "DELETE":
            deleted = self.store.delete(route.key())
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": route.name,
                    "group": route.group,
                    "kind": route.plural,
                    "uid": deleted.get("metadata", {}).get("uid", ""),
                },
            }
        raise ApiError(405, f"method {method} is not supported")

    def _list(self, route: _Route, query: dict[str, str]) -> dict[str, Any]:
        items, version = self.store.list(route.group, route.plural, route.namespace)
        if query.get("labelSelector"):
            items = [obj for obj in items if _matches_labels(obj, query["labelSelector"])]
        if query.get("fieldSelector"):
            items = [obj for obj in items if _matches_fields(obj, query["fieldSelector"])]
        kind = _KIND_OF_PLURAL.get(route.plural) or (
            items[0].get("kind") if items else route.plural.capitalize()
        )
        return {
            "kind": f"{kind}List",
            "apiVersion": route.api_version,
            "metadata": {"resourceVersion": version},
            "items": items,
        }

    def _object_from(self, route: _Route, payload: Any, name: str) -> dict[str, Any]:
        content_type, body = payload
        if content_type not in ("application/json", ""):
            raise ApiError(415, f"unsupported content type {content_type!r} for this request")
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise ApiError(400, "metadata must be an object")
        body_ns = metadata.get("namespace")
        if route.namespace and body_ns and body_ns != route.namespace:
            raise ApiError(
                400,
                f"the namespace of the provided object ({body_ns}) does not match the namespace "
                f"sent on the request ({route.namespace})",
            )
        if route.namespace:
            metadata["namespace"] = route.namespace
        if name:
            metadata.setdefault("name", name)
            if metadata["name"] != name:
                raise ApiError(
                    400,
                    f"the name of the object ({metadata['name']}) does not match the URL ({name})",
                )
        body.setdefault("apiVersion", route.api_version)
        if "kind" not in body and route.plural in _KIND_OF_PLURAL:
            body["kind"] = _KIND_OF_PLURAL[route.plural]
        return body

    def _create(self, route: _Route, payload: Any) -> dict[str, Any]:
        body = self._object_from(route, payload, "")
        metadata = body["metadata"]
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise ApiError(
                    422, "metadata.name: Required value: name or generateName is required"
                )
            metadata["name"] = prefix + secrets.token_hex(3)[:5]
        return self.store.create(route.key(str(metadata["name"])), body)

    def _replace(self, route: _Route, payload: Any) -> dict[str, Any]:
        body = self._object_from(route, payload, route.name)
        if route.subresource == "status":
            existing = self.store.get(route.key())
            if existing is None:
                raise _not_found(route.key())
            existing["status"] = body.get("status")
            existing["metadata"]["resourceVersion"] = body["metadata"].get(
                "resourceVersion", existing["metadata"]["resourceVersion"]
            )
            body = existing
        return self.store.replace(route.key(), body)

    def _patch(self, route: _Route, payload: Any) -> dict[str, Any]:
        content_type, patch = payload
        existing = self.store.get(route.key())
        if existing is None:
            raise _not_found(route.key())
        if content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if not isinstance(patch, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            if route.subresource == "status":
                patch = {"status": patch.get("status")}
            updated = merge_patch(existing, patch)
        elif content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise ApiError(400, "a JSON patch must be a list of operations")
            try:
                updated = json_patch(existing, patch)
            except PatchError as err:
                raise ApiError(422, str(err)) from err
        else:
            raise ApiError(415, f"unsupported patch type {content_type!r}")
        if not isinstance(updated, dict):
            raise ApiError(422, "the patched object is not an object")
        metadata = updated.setdefault("metadata", {})
        metadata["name"] = route.name
        if route.namespace:
            metadata["namespace"] = route.namespace
        # A patch may carry a resourceVersion precondition; without one it always applies.
        wanted = (
            (patch.get("metadata") or {}).get("resourceVersion")
            if isinstance(patch, dict)
            else None
        )
        if wanted and str(wanted) != existing["metadata"]["resourceVersion"]:
            raise _conflict(route.key())
        metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.store.replace(route.key(), updated)


class _HttpsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, api: _Api):
        self.context = context
        self.api = api
        self.verbose = False
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's own thread, not in the accept loop.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


def _make_certificates(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA (reused when `directory` already holds one) and a server certificate for `host`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key_file = directory / "ca.crt", directory / "ca.key"
    now = datetime.datetime.now(datetime.UTC)
    if ca_crt.exists() and ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fakeapi CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_file, _key_pem(ca_key))
        ca_crt.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    try:
        addresses.add(str(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in sorted(addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fakeapi")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_crt, server_key = directory / "server.crt", directory / "server.key"
    server_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(server_key, _key_pem(key))
    return ca_crt, server_crt, server_key


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class FakeApiServer:
    """The fake API server: `start()` serves in a background thread until `stop()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | Path | None = None,
        token: str | None = None,
        ca_dir: str | Path | None = None,
    ):
        self.host = host
        self.port = port
        self.token = token or secrets.token_hex(16)
        self.store = ObjectStore(state_file)
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if ca_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="fakeapi-")
            ca_dir = self._own_dir.name
        self.ca_dir = Path(ca_dir)
        self._server: _HttpsServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_file(self) -> str:
        return str(self.ca_dir / "ca.crt")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> FakeApiServer:
        ca_crt, server_crt, server_key = _make_certificates(self.ca_dir, self.host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(server_crt), str(server_key))
        self._server = _HttpsServer((self.host, self.port), context, _Api(self.store, self.token))
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` as it is (create or overwrite), filling in the server-side metadata."""
        api_version = str(obj.get("apiVersion", "v1"))
        metadata = obj.get("metadata") or {}
        key = (
            _group_of(api_version),
            plural_of(str(obj["kind"])),
            str(metadata.get("namespace") or ""),
            str(metadata["name"]),
        )
        return self.store.put(key, obj)

    def get_object(
        self, api_version: str, kind_plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        return self.store.get((_group_of(api_version), kind_plural, namespace or "", name))

    def delete_object(self, api_version: str, kind_plural: str, namespace: str, name: str) -> bool:
        try:
            self.store.delete((_group_of(api_version), kind_plural, namespace or "", name))
        except ApiError:
            return False
        return True

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fakeapi",
                    "cluster": {"server": self.url, "certificate-authority": self.ca_file},
                }
            ],
            "users": [{"name": "fakeapi", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fakeapi",
                    "context": {"cluster": "fakeapi", "user": "fakeapi", "namespace": namespace},
                }
            ],
            "current-context": "fakeapi",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """A kubeconfig (JSON, which is YAML) pointing at this server with its CA and token."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_private(target, json.dumps(self.kubeconfig(namespace), indent=2).encode())
        return target


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m etcd_chart.fakeapi", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--state-file", help="persist objects to this JSON file")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument("--ca-dir", required=True, help="directory for ca.crt (reused if present)")
    parser.add_argument(
        "--token-file", required=True, help="bearer token file (created when missing)"
    )
    parser.add_argument("--kubeconfig", help="also write a kubeconfig here")
    parser.add_argument("--namespace", default="default", help="namespace of that kubeconfig")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    token_file = Path(args.token_file)
    try:
        if token_file.exists():
            token = token_file.read_text().strip()
        else:
            token = secrets.token_hex(16)
            token_file.parent.mkdir(parents=True, exist_ok=True)
            _write_private(token_file, token.encode())
        server = FakeApiServer(args.host, args.port, args.state_file, token, args.ca_dir)
        server.start()
    except (OSError, ValueError) as err:
        print(f"fakeapi: cannot start: {err}", file=sys.stderr)
        return 2
    assert server._server is not None
    server._server.verbose = args.verbose
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig, args.namespace)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    info = {"url": server.url, "ca_file": server.ca_file, "token_file": str(token_file)}
    print(json.dumps(info), flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
