"""The scale-down hook in the sandbox, under the write ledger (issue 14, items 4 and 5).

- After a full outage, the upgrade that repairs the release (same replica count) passes the
  hook; a real scale-down with no member answering is refused, and the message says how out.
- A hook that cannot finish gives up by itself inside its budget, which stays inside the time
  the upgrade waits for hooks; no member is removed after the upgrade has failed.

On the real control plane: Helm runs the hook Job, the real Job controller its pod.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_chart.sandbox.client import Sandbox
from kube import deployed_revision, sandbox_json
from ledger import Ledger
from membership import (
    change_members,
    client_tls,
    endpoints,
    members,
    pod_names,
    statefulset_pods,
    wait_converged,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def ledger_for() -> Iterator[Callable[[Sandbox, list[str]], Ledger]]:
    started: list[Ledger] = []

    def start(sb: Sandbox, pods: list[str]) -> Ledger:
        status = sb.status()
        ledger = Ledger(endpoints(status, pods), tls=client_tls(status))
        started.append(ledger.start())
        return ledger

    yield start
    for ledger in started:
        ledger.stop()


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=call()))
    thread.start()
    return thread, outcome


def test_full_outage_upgrade_with_the_same_replicas_passes_the_hook(
    sandbox: Callable[..., Sandbox], chart_dir: Path, ledger_for: Callable[..., Ledger]
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    ledger = ledger_for(sb, pod_names(3))
    time.sleep(2)
    ledger.stop()
    assert ledger.acknowledged, "no write was acknowledged before the outage"

    # Every member down (its pods held; `stop-all` would take the nodes, where the hook runs
    # too), and the upgrade that repairs it keeps the replica count: the hook lets it through,
    # and the pods come back once Helm is past its hooks.
    for pod in pod_names(3):
        sb.stop(pod)
    revision = deployed_revision(sb)
    upgrading, outcome = in_background(lambda: sb.upgrade(str(chart_dir), check=False, timeout=240))
    try:
        wait_for(
            lambda: deployed_revision(sb) > revision or not upgrading.is_alive(),
            "the upgrade to get past its hooks",
            timeout=120,
        )
        assert upgrading.is_alive(), outcome["result"].stderr
    finally:
        for pod in pod_names(3):
            sb.start(pod)
        upgrading.join(timeout=300)
    result = outcome["result"]
    assert result.returncode == 0, result.stderr
    assert wait_converged(sb, 3) == ids

    # A real scale-down with no member answering: refused, nothing applied, the way out named.
    for pod in pod_names(3):
        sb.stop(pod)
    revision = deployed_revision(sb)
    refused = sb.upgrade(str(chart_dir), "--set", "replicas=1", check=False, timeout=120)
    assert refused.returncode != 0
    assert "replicas=1 cluster=unreachable record=present statefulset=3 -> refusing" in (
        refused.stderr
    ), refused.stderr
    assert "`helm upgrade --no-hooks`" in refused.stderr
    assert "scaleDown.enabled=false" in refused.stderr
    assert deployed_revision(sb) == revision
    assert sandbox_json(sb, "get", "statefulset", "etcd")["spec"]["replicas"] == 3
    for pod in pod_names(3):
        sb.start(pod)
    assert wait_converged(sb, 3) == ids
    for endpoint in endpoints(sb.status(), pod_names(3)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"


def test_a_hook_that_cannot_finish_gives_up_inside_the_upgrades_wait(
    sandbox: Callable[..., Sandbox], chart_dir: Path, ledger_for: Callable[..., Ledger]
) -> None:
    budget = ["--set", "scaleDown.timeoutSeconds=90,scaleDown.backoffLimit=0"]
    sb = sandbox(str(chart_dir), "--set", "replicas=5", *budget)
    ids = wait_converged(sb, 5)
    ledger = ledger_for(sb, ["etcd-0", "etcd-2"])
    # A member that stays is down: the hook waits for it and must give up by itself in time.
    sb.stop("etcd-1")
    started = time.monotonic()
    result = sb.upgrade(str(chart_dir), "--set", "replicas=3", *budget, check=False, timeout=120)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert "did not finish in time" not in result.stderr, result.stderr
    assert "giving up on removing etcd-4 (--timeout): not every remaining voter is healthy:" in (
        result.stderr
    ), result.stderr
    assert "`helm upgrade --no-hooks`" in result.stderr
    assert took < 110, f"the upgrade waited {took:.0f} s for a hook whose budget is 90 s"

    # The Job is over: bringing etcd-1 back removes nothing behind the failed upgrade's back.
    sb.start("etcd-1")
    wait_for(lambda: statefulset_pods(sb) == pod_names(5), "etcd-1's pod")
    ledger.set_endpoints(endpoints(sb.status(), pod_names(5)))
    time.sleep(15)
    assert sorted(m["name"] for m in members(sb, "etcd-0")) == pod_names(5)
    assert wait_converged(sb, 5) == ids
    time.sleep(1)
    ledger.stop()
    for endpoint in endpoints(sb.status(), pod_names(5)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"


def test_a_member_removed_while_its_pod_stays_deletes_its_pod_and_rejoins(
    sandbox: Callable[..., Sandbox], chart_dir: Path, ledger_for: Callable[..., Ledger]
) -> None:
    """What a hook that outlived Helm leaves behind: a member removed while the StatefulSet still
    wants its pod. Its etcd exits at once on every restart and init containers do not run again;
    after --rejoin-after (the hook's budget + 60 s; 60 s with no hook, as here, to keep the test
    short) its agent deletes its own pod through the API (RBAC: delete on the release's pod
    names), the StatefulSet controller creates it again, and its prepare joins as a new member."""
    sb = sandbox(str(chart_dir), "--set", "scaleDown.enabled=false")
    ids = wait_converged(sb, 3)
    ledger = ledger_for(sb, ["etcd-0", "etcd-1"])
    before = sandbox_json(sb, "get", "pod", "etcd-2")["metadata"]["uid"]
    change_members(sb, "etcd-0", "remove", f"{ids['etcd-2']:x}")
    started = time.monotonic()
    wait_for(
        lambda: (
            (sandbox_json(sb, "get", "pod", "etcd-2", "--ignore-not-found") or {})
            .get("metadata", {})
            .get("uid", before)
            != before
        ),
        "etcd-2's pod to be deleted and created again",
        timeout=180,
    )
    waited = time.monotonic() - started
    assert waited >= 60, f"the pod was deleted after {waited:.0f} s, before --rejoin-after (60 s)"
    now = wait_converged(sb, 3)
    assert {n: now[n] for n in ("etcd-0", "etcd-1")} == {n: ids[n] for n in ("etcd-0", "etcd-1")}
    assert now["etcd-2"] != ids["etcd-2"]
    prepare = sb.logs("etcd-2", "prepare")
    assert "moved data to /var/lib/etcd/data.removed-" in prepare, prepare
    ledger.set_endpoints(endpoints(sb.status(), pod_names(3)))
    time.sleep(1)
    ledger.stop()
    for endpoint in endpoints(sb.status(), pod_names(3)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"
