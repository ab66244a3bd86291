"""Fixtures of the post-renderer's live-cluster tests: a fake API server and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_chart.fakeapi import FakeApiServer
from etcd_chart.postrender.cluster import Cluster


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer(token="test-token").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(api: FakeApiServer, tmp_path: Path) -> Iterator[Cluster]:
    """A client of `api` through a kubeconfig whose context namespace is `db`."""
    live = Cluster(str(api.write_kubeconfig(tmp_path / "kubeconfig", "db")))
    try:
        yield live
    finally:
        live.close()
