"""An in-memory stand-in for EtcdClient with etcd's range semantics (key, range_end, limit,
keys_only, count, more), so the UI's paging can be checked call by call."""

from __future__ import annotations

import base64
import bisect
from typing import Any


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class FakeEtcd:
    def __init__(self, keys: dict[bytes, bytes]):
        self.data = dict(keys)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if path == "/v3/kv/range":
            return self._range(body)
        if path == "/v3/kv/put":
            self.data[base64.b64decode(body["key"])] = base64.b64decode(body["value"])
            return {"header": {"revision": "7"}}
        if path == "/v3/kv/deleterange":
            found = self.data.pop(base64.b64decode(body["key"]), None)
            return {"deleted": "1" if found is not None else "0"}
        raise AssertionError(f"unexpected call {path}")

    def _range(self, body: dict[str, Any]) -> dict[str, Any]:
        key = base64.b64decode(body["key"])
        end = base64.b64decode(body.get("range_end", ""))
        ordered = sorted(self.data)
        if not end:
            chosen = [key] if key in self.data else []
        else:
            start = bisect.bisect_left(ordered, key)
            stop = len(ordered) if end == b"\x00" else bisect.bisect_left(ordered, end)
            chosen = ordered[start:stop]
        limit = int(body.get("limit") or 0)
        page = chosen[:limit] if limit else chosen
        kvs = []
        for k in page:
            kv: dict[str, Any] = {"key": b64(k), "mod_revision": "2", "version": "1"}
            if not body.get("keys_only"):
                kv["value"] = b64(self.data[k])
            kvs.append(kv)
        answer: dict[str, Any] = {"count": str(len(chosen))}
        if kvs:
            answer["kvs"] = kvs
        if len(page) < len(chosen):
            answer["more"] = True
        return answer

    def authenticate(self, endpoint: str) -> None:
        self.calls.append(("/v3/auth/authenticate", {}))

    def health(self, endpoint: str) -> tuple[bool, str]:
        return True, "healthy"
