"""Fixtures of the post-renderer's live-cluster tests: a namespace of their own on the real
control plane (`control_plane` in tests/conftest.py) and a client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from etcd_chart.postrender.cluster import Cluster
from etcd_chart.sandbox.controlplane import ControlPlane
from realapi import write_kubeconfig


@pytest.fixture
def ns(namespace: Callable[[], str]) -> str:
    """The test's own namespace on the shared control plane."""
    return namespace()


@pytest.fixture
def cluster(control_plane: ControlPlane, ns: str, tmp_path: Path) -> Iterator[Cluster]:
    """A client of the real API server, as the admin, through a kubeconfig whose context
    namespace is `ns`."""
    live = Cluster(str(write_kubeconfig(control_plane, tmp_path / "kubeconfig", ns)))
    try:
        yield live
    finally:
        live.close()
