"""The etcd client of the UI, made again when its TLS files change: cert-manager renews the
certificate in the mounted Secret while the pod runs, and a context loads the files only once."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from etcd_client import EtcdClient, client_tls_context

CHECK_EVERY = 10.0


def files_signature(paths: list[str]) -> tuple[tuple[str, float, int], ...]:
    """(path, mtime, size) of each file; a missing file counts as (path, 0, -1)."""
    found = []
    for path in paths:
        try:
            stat = os.stat(path)
            found.append((path, stat.st_mtime, stat.st_size))
        except OSError:
            found.append((path, 0.0, -1))
    return tuple(found)


class ClientSource:
    """`get()` returns the current EtcdClient, rebuilt when the TLS files have changed (looked
    at no more often than every CHECK_EVERY seconds)."""

    def __init__(
        self,
        cacert: str,
        cert: str,
        key: str,
        https: bool,
        make: Callable[..., EtcdClient],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._files = [f for f in (cacert, cert, key) if f]
        self._args = (cacert, cert, key, https)
        self._make = make
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = files_signature(self._files)
        self._client = make(client_tls_context(*self._args))
        self._checked = clock()

    def get(self) -> EtcdClient:
        with self._lock:
            now = self._clock()
            if not self._files or now - self._checked < CHECK_EVERY:
                return self._client
            self._checked = now
            signature = files_signature(self._files)
            if signature != self._signature:
                self._client = self._make(client_tls_context(*self._args))
                self._signature = signature
            return self._client
