"""End-to-end fixtures: sandboxes that are always stopped, and a check that nothing is left running.

`sandbox(...)` runs `etcd-chart sandbox up` with the given render arguments in a fresh state dir
under the test's tmp_path and returns the `Sandbox` handle; at teardown every sandbox the test
created is brought `down --purge` and `assert_no_stray_processes` checks that no process of it
survived (the daemon, the control plane, a launcher, or an etcd/agent process, found by the
state dir in its command line or its environment).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.sandbox.client import Sandbox
from ledger import Ledger
from membership import (
    OUTAGE_PROPERTY,
    WRITE_OUTAGES,
    Writer,
    client_tls,
    endpoints,
    statefulset_pods,
)
from strays import assert_no_stray_processes, leftovers, subnet_of

SANDBOX_CLI = [sys.executable, "-m", "etcd_chart.cli", "sandbox"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SANDBOX_CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Factory: `sandbox("chart/", "--set", "replicas=5", name="a")` -> a running Sandbox."""
    created: list[Sandbox] = []

    def make(
        *render_args: str, name: str = "sandbox", timeout: float = 240, **kwargs: Any
    ) -> Sandbox:
        handle = Sandbox(tmp_path / name, **kwargs)
        created.append(handle)
        handle.up(*render_args, timeout=timeout)
        return handle

    yield make
    problems = []
    for handle in created:
        subnet = subnet_of(handle.state_dir)
        if not handle.state_dir.exists():  # a failed `up` removed it; what it left is checked
            problems += leftovers(handle.state_dir, subnet)
            continue
        result = handle.down(purge=True)
        if result.returncode != 0:
            problems.append(f"down failed: {result.stderr}")
        left = leftovers(handle.state_dir, subnet)
        if left:
            problems.append("\n".join(left))
    assert problems == [], "\n".join(problems)


# The write outages a test recorded travel in its reports (so that they reach the terminal
# summary from pytest-xdist's workers too); tests/conftest.py prints them.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.user_properties.extend((OUTAGE_PROPERTY, list(entry)) for entry in WRITE_OUTAGES)
    WRITE_OUTAGES.clear()


@pytest.fixture
def no_strays() -> Callable[[Path, str | None], None]:
    """`assert_no_stray_processes(state_dir, subnet)`, for tests that run the CLI directly."""
    return assert_no_stray_processes


@pytest.fixture
def sandbox_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`sandbox_cli("up", "--manifest", ..., env=...)`: the command line, output captured."""
    return run_cli


@pytest.fixture
def writer(request: pytest.FixtureRequest) -> Iterator[Writer]:
    started: list[Ledger] = []

    def start(sb: Sandbox, user: tuple[str, str] | None = None) -> Ledger:
        status = sb.status()
        ledger = Ledger(endpoints(status, statefulset_pods(sb)), tls=client_tls(status), user=user)
        started.append(ledger.start())
        return ledger

    yield start
    for ledger in started:
        ledger.stop()
