"""Fixtures for the member agent tests; the harness itself is in agent_harness.py."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_harness import Release
from etcd_chart.sandbox.controlplane import ControlPlane
from etcd_versions import etcd_program


@pytest.fixture(scope="session")
def etcd_bin(etcd_version: str) -> str:
    """Here every test with a real etcd runs on each release the tests run (ids `etcd3.5`...)."""
    return etcd_program(etcd_version, "etcd")


@pytest.fixture(scope="session")
def etcdctl_bin(etcd_version: str) -> str:
    return etcd_program(etcd_version, "etcdctl")


@pytest.fixture
def release_factory(
    tmp_path: Path,
    etcd_bin: str,
    control_plane: ControlPlane,
    namespace: Callable[[], str],
) -> Iterator[Callable[..., Release]]:
    """`make(name, pods, tls)`: a Release in a fresh namespace of the shared control plane."""
    version = subprocess.run([etcd_bin, "--version"], capture_output=True, text=True)
    if "etcd Version: 3." not in version.stdout:
        pytest.fail(f"{etcd_bin} is not an etcd binary (--version: {version.stdout!r})")
    made: list[Release] = []

    def make(name: str = "r", pods: int = 5, tls: bool = False) -> Release:
        root = tmp_path / name
        root.mkdir()
        release = Release(root, etcd_bin, control_plane, namespace(), pods, tls)
        made.append(release)
        return release

    yield make
    for release in made:
        release.close()
