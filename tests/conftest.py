"""Shared fixtures: repository paths, the real tools that ci/install-tools.sh caches, and one real
control plane per test process (helpers for it in realapi.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.helm import ToolMissing, find_tool
from etcd_chart.sandbox.controlplane import ControlPlane, find_binaries
from etcd_chart.sandbox.network import choose_subnet
from etcd_versions import ETCD_MINORS, etcd_release
from realapi import delete_namespace, new_namespace
from strays import stray_processes

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "chart"
SHARED = REPO.parent / "shared"


def _tool(name: str) -> str:
    try:
        return find_tool(name)
    except ToolMissing as err:  # the suite is useless without them: fail loudly, never skip
        pytest.fail(f"{err}", pytrace=False)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def helm3() -> str:
    return _tool("helm3")


@pytest.fixture(scope="session")
def helm4() -> str:
    return _tool("helm4")


@pytest.fixture(scope="session", params=[3, 4], ids=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest) -> str:
    return _tool(f"helm{request.param}")


@pytest.fixture(scope="session", params=ETCD_MINORS, ids=[f"etcd{m}" for m in ETCD_MINORS])
def etcd_version(request: pytest.FixtureRequest) -> str:
    """Each etcd release the tests run, e.g. `3.6.16` (a test using it runs once per release)."""
    return etcd_release(str(request.param))


@pytest.fixture(scope="session", params=["helm3", "helm3-newest", "helm4"])
def every_helm(request: pytest.FixtureRequest) -> str:
    """Helm 3.17 and 4.3 (prebuilt) and the newest Helm 3 (built from its Go module)."""
    return _tool(str(request.param))


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool of Prometheus 3, built from its Go module (ci/gobuild/prometheus)."""
    return _tool("promtool")


@pytest.fixture(scope="session")
def etcd_bin() -> str:
    return _tool("etcd")


@pytest.fixture(scope="session")
def etcdctl_bin() -> str:
    return _tool("etcdctl")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    cert-manager) shared by the tests of one process; each test works in namespaces of its own.
    Its etcd is the default one, whatever etcd release a test runs its members on."""
    root = tmp_path_factory.mktemp("control-plane")
    binaries = find_binaries(_tool("etcd"), cert_manager=True)
    plane = ControlPlane(root, f"{choose_subnet(root)}.1", binaries)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        assert stray_processes(root, None) == []


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[Callable[[], str]]:
    """`namespace()`: a fresh namespace on the shared control plane, deleted after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(new_namespace(control_plane))
        return made[-1]

    yield make
    for name in made:
        delete_namespace(control_plane, name)


@pytest.fixture(autouse=True)
def _no_live_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never talk to a real Kubernetes cluster by accident."""
    for var in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", os.devnull)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# Write outages the end-to-end tests recorded (tests/e2e/conftest.py puts them in the reports).
# Here, not there: with pytest-xdist the controller, which writes the summary, loads only this
# conftest.
REPORTED_OUTAGES: list[tuple[str, float, int]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "write_outage":
            scenario, seconds, acknowledged = value
            REPORTED_OUTAGES.append((str(scenario), float(seconds), int(acknowledged)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTED_OUTAGES:
        return
    terminalreporter.write_sep("-", "longest write outage per scenario")
    for scenario, seconds, acknowledged in REPORTED_OUTAGES:
        terminalreporter.write_line(
            f"{scenario:<60} {seconds:6.2f} s   ({acknowledged} writes acknowledged by then)"
        )
