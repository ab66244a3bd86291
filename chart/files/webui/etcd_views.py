"""What the UI's API answers, read from etcd through the member agent's client (etcd_client.py):
the cluster, one page of keys, one key, a key's history; and the writes."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from etcd_client import EtcdClient, EtcdError, Unreachable, prefix_range_end
from kube_keys import kubernetes_key
from values import describe_value

MAX_PAGE = 1000
MAX_HISTORY = 100
# etcd's gRPC code for a revision below the compacted one (OutOfRange).
COMPACTED_CODE = 11


class NoEndpoint(Exception):
    """No etcd endpoint answered."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text or "")


def member_hex(value: Any) -> str:
    """A member or cluster ID (the gateway sends uint64 as a decimal string) as 16 hex digits."""
    return format(int(value or 0), "016x")


def range_bounds(prefix: bytes) -> tuple[bytes, bytes]:
    """key and range_end of every key under `prefix`; the empty prefix is the whole keyspace,
    which etcd writes as ["\\0", "\\0")."""
    if not prefix:
        return b"\x00", b"\x00"
    return prefix, prefix_range_end(prefix)


def child_of(prefix: bytes, key: bytes) -> tuple[bytes, bool]:
    """The entry `key` shows as under `prefix` in a tree on "/": (folder, True) when the key lies
    deeper (the folder is the prefix plus the next segment and its "/"), else (key, False)."""
    rest = key[len(prefix) :]
    slash = rest.find(b"/")
    if slash < 0 or slash == len(rest) - 1:
        return key, False
    return prefix + rest[: slash + 1], True


class EtcdViews:
    """Every read and write the UI makes; each call tries the endpoints in order."""

    def __init__(
        self, client: Callable[[], EtcdClient], endpoints: list[str], password_login: bool = False
    ):
        self._client = client
        self.endpoints = endpoints
        self._password_login = password_login
        self._logged_in: EtcdClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> EtcdClient:
        return self._client()

    def _client_for(self, endpoint: str) -> EtcdClient:
        """The client, logged in first when the UI has an etcd user: without a token etcd takes
        the gateway's own certificate name as the user and answers "permission denied", which
        does not look like a request to log in."""
        client = self.client
        if self._password_login:
            with self._lock:
                if self._logged_in is not client:
                    client.authenticate(endpoint)
                    self._logged_in = client
        return client

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Unreachable | None = None
        for endpoint in self.endpoints:
            try:
                return self._client_for(endpoint).call(endpoint, path, body)
            except Unreachable as err:
                last = err
        raise NoEndpoint(str(last) if last else "no endpoint configured")

    def ready(self) -> None:
        """Raises unless etcd answers a read as this UI's user."""
        self.call("/v3/kv/range", {"key": b64(b"\x00"), "limit": 1, "keys_only": True})

    # -- the cluster ---------------------------------------------------------------------------
    def cluster(self) -> dict[str, Any]:
        listed = self.call("/v3/cluster/member/list", {"linearizable": False})
        try:
            alarms = self.call("/v3/maintenance/alarm", {"action": "GET"}).get("alarms") or []
        except EtcdError as err:
            alarms, alarm_error = [], err.message
        else:
            alarm_error = ""
        members = listed.get("members") or []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
            looks = list(pool.map(self._member_status, members))
        leader = next((m["leaderId"] for m in looks if m.get("leaderId")), "")
        for member in looks:
            member["leader"] = bool(leader) and member["id"] == leader
            member["alarms"] = [
                str(a.get("alarm", "NONE"))
                for a in alarms
                if member_hex(a.get("memberID")) == member["id"]
            ]
        header = listed.get("header") or {}
        return {
            "clusterId": member_hex(header.get("cluster_id")),
            "revision": max((int(m.pop("revision", 0)) for m in looks), default=0),
            "leader": leader,
            "members": sorted(looks, key=lambda m: str(m["name"])),
            "alarmError": alarm_error,
        }

    def _member_status(self, member: dict[str, Any]) -> dict[str, Any]:
        look: dict[str, Any] = {
            "name": str(member.get("name") or ""),
            "id": member_hex(member.get("ID")),
            "peerURLs": list(member.get("peerURLs") or []),
            "clientURLs": list(member.get("clientURLs") or []),
            "learner": bool(member.get("isLearner")),
            "started": bool(member.get("name")),
        }
        urls = look["clientURLs"]
        if not urls:
            look["health"] = {"healthy": False, "reason": "not started"}
            look["revision"] = 0
            return look
        client = self.client
        healthy, reason = client.health(urls[0])
        look["health"] = {"healthy": healthy, "reason": reason}
        try:
            status = client.call(urls[0], "/v3/maintenance/status", {})
        except (EtcdError, Unreachable) as err:
            look["statusError"] = str(err)
            look["revision"] = 0
            return look
        look.update(
            {
                "revision": int((status.get("header") or {}).get("revision") or 0),
                "version": str(status.get("version") or ""),
                "dbSize": int(status.get("dbSize") or 0),
                "dbSizeInUse": int(status.get("dbSizeInUse") or 0),
                "raftTerm": int(status.get("raftTerm") or 0),
                "raftIndex": int(status.get("raftIndex") or 0),
                "raftAppliedIndex": int(status.get("raftAppliedIndex") or 0),
                "leaderId": member_hex(status.get("leader")) if status.get("leader") else "",
                "errors": list(status.get("errors") or []),
            }
        )
        return look

    # -- keys ----------------------------------------------------------------------------------
    def keys(self, prefix: bytes, after: bytes = b"", limit: int = 500) -> dict[str, Any]:
        """One page of the entries under `prefix`, as a tree on "/": keys directly under it and
        folders (the next path segment of deeper keys), each folder listed once. `after` is the
        cursor of the previous page (where the range starts again); ranges are keys_only with a
        limit, and a folder is skipped past in one step, so a page costs a few small ranges
        however many keys lie under the prefix."""
        limit = max(1, min(limit, MAX_PAGE))
        start, end = range_bounds(prefix)
        if after:
            start = after
        entries: list[dict[str, Any]] = []
        total: int | None = None
        more = True
        while more and len(entries) < limit:
            answer = self._range(start, end, limit - len(entries))
            if total is None and not after:
                total = int(answer.get("count") or 0)
            kvs = answer.get("kvs") or []
            more = bool(answer.get("more"))
            for index, kv in enumerate(kvs):
                key = unb64(kv["key"])
                entry, folder = child_of(prefix, key)
                entries.append({"key": b64(entry), "display": _display(entry), "folder": folder})
                if folder:
                    start = prefix_range_end(entry)
                    # Keys past the folder may follow, whatever this answer held.
                    more = not (end != b"\x00" and start >= end)
                    break
                start = key + b"\x00"
                if len(entries) >= limit:
                    more = more or index < len(kvs) - 1
                    break
        return {
            "prefix": b64(prefix),
            "entries": entries,
            "next": b64(start) if more else "",
            "count": total,
        }

    def _range(self, start: bytes, end: bytes, limit: int) -> dict[str, Any]:
        return self.call(
            "/v3/kv/range",
            {"key": b64(start), "range_end": b64(end), "limit": limit, "keys_only": True},
        )

    def key(self, key: bytes) -> dict[str, Any] | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return _key_view(kvs[0]) if kvs else None

    def history(self, key: bytes, limit: int = 20) -> dict[str, Any]:
        """The key's earlier values, newest first: read at mod_revision - 1 again and again until
        the key did not exist yet (its first version) or etcd has compacted that revision."""
        limit = max(1, min(limit, MAX_HISTORY))
        versions: list[dict[str, Any]] = []
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        stop = "deleted" if not kvs else ""
        current = kvs[0] if kvs else None
        while current is not None and len(versions) < limit:
            if int(current.get("version") or 0) <= 1:
                stop = "created"
                break
            revision = int(current["mod_revision"]) - 1
            try:
                older = self.call("/v3/kv/range", {"key": b64(key), "revision": revision})
            except EtcdError as err:
                if err.code == COMPACTED_CODE or "compacted" in err.message:
                    stop = "compacted"
                    break
                raise
            found = older.get("kvs") or []
            if not found:
                stop = "created"
                break
            current = found[0]
            versions.append(_key_view(current))
        else:
            if current is not None and not stop:
                stop = "limit"
        return {"key": b64(key), "versions": versions, "stop": stop}

    def put(self, key: bytes, value: bytes) -> int:
        answer = self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return int((answer.get("header") or {}).get("revision") or 0)

    def delete(self, key: bytes) -> int:
        answer = self.call("/v3/kv/deleterange", {"key": b64(key)})
        return int(answer.get("deleted") or 0)


def _display(key: bytes) -> str:
    return key.decode("utf-8", errors="replace")


def _key_view(kv: dict[str, Any]) -> dict[str, Any]:
    key = unb64(kv.get("key", ""))
    value = unb64(kv.get("value", ""))
    return {
        "key": b64(key),
        "display": _display(key),
        "createRevision": int(kv.get("create_revision") or 0),
        "modRevision": int(kv.get("mod_revision") or 0),
        "version": int(kv.get("version") or 0),
        "lease": format(int(kv.get("lease") or 0), "x") if kv.get("lease") else "",
        "kubernetes": kubernetes_key(key),
        "value": describe_value(key, value),
    }
