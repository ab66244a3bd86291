"""Issue 14, items 1 and 2 end to end, under the write ledger.

Item 2: scale 3 -> 4 where etcd-3's first etcd start failed before its WAL existed (leaving
member/snap/db); its recreated pod joins with `existing` on its unstarted learner entry.

Item 1: a lost WAL claim in a full outage.

With `persistence.wal.enabled` (chart/ci/separate-wal-values.yaml), etcd-1 lags while writes are
acknowledged by etcd-0 and etcd-2; then a full outage in which etcd-0 loses only its WAL claim.
etcd-0 comes back first, then etcd-1, while etcd-2 stays down. etcd-0's snapshot and db without
a WAL are damaged data: its agent waits (never starts etcd on them, never with `new`), and once
etcd-2 is back it moves them aside and rejoins. No acknowledged write is ever read back as
missing, and every member only ever reports the original cluster ID.

Both on the real control plane: claims are provisioned for the node the scheduler chose, and the
pods are recreated by the real StatefulSet controller.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from etcd_chart.sandbox.client import Sandbox
from kube import claim_directory
from ledger import EtcdGateway, Ledger
from membership import (
    WRITE_OUTAGES,
    change_members,
    client_tls,
    cluster_id,
    endpoints,
    members,
    pod_names,
    statefulset_pods,
    wait_converged,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def ledgers() -> Iterator[list[Ledger]]:
    started: list[Ledger] = []
    yield started
    for ledger in started:
        ledger.stop()


class Watcher:
    """In the background: the cluster IDs every member reports, and every read-back of the
    ledger that a member answers with an acknowledged write missing."""

    def __init__(self, sb: Sandbox, ledger: Ledger) -> None:
        self.sb = sb
        self.ledger = ledger
        self.cluster_ids: set[int] = set()
        self.missing: list[tuple[str, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        gateway = EtcdGateway(client_tls(self.sb.status()), timeout=0.5)
        while not self._stop.is_set():
            for endpoint in endpoints(self.sb.status(), pod_names(3)):
                try:
                    answer = gateway.call(endpoint, "/v3/maintenance/status", {})
                except OSError:
                    continue
                header = answer.get("header") or {}
                self.cluster_ids.add(int(header.get("cluster_id", 0)))  # type: ignore[union-attr]
                try:
                    lost = self.ledger.verify(endpoint)
                except AssertionError:  # no answer (no quorum) is not an answer "missing"
                    continue
                if lost:
                    self.missing.append((endpoint.server_name, lost))
            self._stop.wait(0.3)


def test_a_lost_wal_claim_in_a_full_outage_loses_no_acknowledged_write(
    sandbox: Callable[..., Sandbox], chart_dir: Path, ledgers: list[Ledger]
) -> None:
    values = str(chart_dir / "ci" / "separate-wal-values.yaml")
    classes = ["--storage-class", "standard", "--storage-class", "fast-ssd"]  # as the values say
    sb = sandbox(str(chart_dir), "-f", values, *classes)
    ids = wait_converged(sb, 3)
    original = cluster_id(sb, "etcd-0")
    status = sb.status()
    ledger = Ledger(endpoints(status, pod_names(3)), tls=client_tls(status))
    ledgers.append(ledger.start())
    time.sleep(1)

    # etcd-1 lags: what follows is acknowledged by etcd-0 and etcd-2 only.
    sb.stop("etcd-1")
    ledger.set_endpoints(endpoints(sb.status(), ["etcd-0", "etcd-2"]))
    lagging = len(ledger.acknowledged)
    time.sleep(3)
    ledger.stop()
    assert len(ledger.acknowledged) > lagging, "no write was acknowledged while etcd-1 lagged"

    # Full outage; etcd-0 loses its WAL claim only. etcd-0 comes back first, etcd-2 stays down.
    sb.stop_all()
    sb.lose_volume("etcd-0", claim="wal")
    sb.stop("etcd-2")
    sb.start_all()
    with Watcher(sb, ledger) as watcher:
        time.sleep(8)
        sb.start("etcd-1")
        time.sleep(20)
        alone = {p["name"]: p for p in sb.status()["pods"]}
        assert not alone["etcd-0"]["ready"], "etcd-0 became ready on a snapshot without a WAL"
        assert "data=damaged cluster=unreachable -> waiting" in sb.logs("etcd-0", "prepare")
        assert watcher.missing == [], f"acknowledged writes answered as missing: {watcher.missing}"

        sb.start("etcd-2")
        wait_for(lambda: statefulset_pods(sb) == pod_names(3), "the pods to exist")
        recovery = Ledger(endpoints(sb.status(), pod_names(3)), tls=client_tls(sb.status()))
        ledgers.append(recovery.start())
        now = wait_converged(sb, 3)
        recovery.set_endpoints(endpoints(sb.status(), pod_names(3)))
        WRITE_OUTAGES.append(
            (
                "data 1: lost WAL claim in a full outage (from etcd-2's return)",
                recovery.take_outage(),
                len(recovery.acknowledged),
            )
        )
    assert watcher.missing == [], f"acknowledged writes answered as missing: {watcher.missing}"
    assert watcher.cluster_ids == {original}
    assert now["etcd-0"] != ids["etcd-0"], "etcd-0 should have rejoined as a new member"
    assert {n: now[n] for n in ("etcd-1", "etcd-2")} == {n: ids[n] for n in ("etcd-1", "etcd-2")}
    prepare = sb.logs("etcd-0", "prepare")
    assert "moved data to /var/lib/etcd/data.removed-" in prepare, prepare
    for pod in pod_names(3):
        assert " state new;" not in sb.logs(pod, "prepare").splitlines()[-1], pod
    before = len(recovery.acknowledged)
    time.sleep(1)
    recovery.stop()
    assert len(recovery.acknowledged) > before, "the writer made no progress on the final cluster"
    for endpoint in endpoints(sb.status(), pod_names(3)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"
        assert recovery.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"


def failed_first_start(etcd_bin: str, data_dir: Path) -> None:
    """A real etcd first start as a joining member that fails before its WAL exists: its peers
    do not answer. It leaves member/snap/db behind, as in the pod."""
    peer = "http://127.0.0.1:1"  # nothing listens there
    result = subprocess.run(
        [
            etcd_bin,
            "--name=etcd-3",
            f"--data-dir={data_dir}",
            "--listen-peer-urls=http://127.0.0.1:0",
            "--listen-client-urls=http://127.0.0.1:0",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--initial-advertise-peer-urls=http://127.0.0.1:2",
            "--initial-cluster=etcd-3=http://127.0.0.1:2,etcd-0=" + peer,
            "--initial-cluster-state=existing",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stderr
    assert (data_dir / "member" / "snap" / "db").is_file(), result.stderr
    assert not any((data_dir / "member" / "wal").glob("*.wal"))


def test_a_joining_member_whose_first_start_failed_joins_the_existing_cluster(
    sandbox: Callable[..., Sandbox], chart_dir: Path, ledgers: list[Ledger], etcd_bin: str
) -> None:
    sb = sandbox(str(chart_dir))
    ids = wait_converged(sb, 3)
    original = cluster_id(sb, "etcd-0")
    status = sb.status()
    ledger = Ledger(endpoints(status, pod_names(3)), tls=client_tls(status))
    ledgers.append(ledger.start())

    # Scale 3 -> 4 with etcd-3's pod held at its node. etcd-3 is added as a learner (as its
    # agent does), and its first etcd start fails before a WAL exists, on the claim the
    # provisioner made for it; then its pod runs.
    sb.stop("etcd-3")
    own = next(m for m in members(sb, "etcd-0") if m["name"] == "etcd-0")
    peer_url = own["peerURLs"][0].replace("etcd-0.", "etcd-3.", 1)
    change_members(sb, "etcd-0", "add", "etcd-3", "--learner", f"--peer-urls={peer_url}")
    outcome: dict[str, object] = {}

    def upgrade() -> None:
        # With no post-renderer (a chart-repository install, Argo CD) the template says `new`.
        outcome["result"] = sb.upgrade(
            str(chart_dir),
            "--no-post-renderer",
            "--set",
            "replicas=4,allowEvenReplicas=true",
            check=False,
            timeout=300,
        )

    upgrading = threading.Thread(target=upgrade)
    upgrading.start()
    try:
        wait_for(
            lambda: claim_directory(sb, "data-etcd-3") is not None,
            "etcd-3's claim to be bound",
            timeout=120,
        )
        data = claim_directory(sb, "data-etcd-3")
        assert data is not None
        failed_first_start(etcd_bin, data / "data")
        sb.start("etcd-3")
        now = wait_converged(sb, 4)
    finally:
        upgrading.join(timeout=330)
    result = outcome["result"]
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    ledger.set_endpoints(endpoints(sb.status(), pod_names(4)))
    WRITE_OUTAGES.append(
        (
            "data 2: a joining member's failed first start",
            ledger.take_outage(),
            len(ledger.acknowledged),
        )
    )
    prepare = sb.logs("etcd-3", "prepare")
    assert "data=damaged cluster=reachable(4 members" in prepare, prepare
    assert "moved data to /var/lib/etcd/data.removed-" in prepare, prepare
    assert "reusing the unstarted member" in prepare and " state new;" not in prepare, prepare
    assert {n: now[n] for n in ids} == ids
    assert cluster_id(sb, "etcd-3") == original
    before = len(ledger.acknowledged)
    time.sleep(1)
    ledger.stop()
    assert len(ledger.acknowledged) > before, "the writer made no progress on the final cluster"
    for endpoint in endpoints(sb.status(), pod_names(4)):
        assert ledger.verify(endpoint) == [], f"acknowledged writes missing on {endpoint}"
