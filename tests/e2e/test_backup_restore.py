"""Backups and restore end to end (issue 10), on the sandbox's real control plane: the backup
CronJob's Jobs (made by hand the Kubernetes way, `kubectl create job --from=cronjob/...`) save,
check, name and prune snapshots on a claim while the write ledger writes; a new release restores
one of them, and holds exactly what the old cluster held at the snapshot's revision: every write
acknowledged before the backup started, and nothing written after that revision."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path

import pytest
from etcd_chart.sandbox.client import Sandbox
from kube import claim_directory, sandbox_json, sandbox_kubectl
from ledger import EtcdGateway, Ledger
from membership import endpoints, statefulset_pods, wait_for
from s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, start_s3_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHART = Path(__file__).resolve().parents[2] / "chart"
sys.path.insert(0, str(CHART / "files" / "etcd-agent"))
from s3_client import S3Client, S3Settings  # noqa: E402

BOOTSTRAP = "bootstrapping a new cluster"
SNAPSHOT_NAME = re.compile(r"etcd-[0-9]{8}T[0-9]{6}Z-r([0-9]+)\.db")


def run_backup_job(sb: Sandbox, job: str, timeout: float = 120) -> None:
    sandbox_kubectl(sb, "create", "job", "--from=cronjob/etcd-backup", job)

    def finished() -> bool:
        status = (sandbox_json(sb, "get", "job", job) or {}).get("status") or {}
        assert not status.get("failed"), f"backup Job {job} failed: {status}"
        return bool(status.get("succeeded"))

    wait_for(finished, f"backup Job {job} to succeed", timeout=timeout)


def snapshots(directory: Path) -> dict[str, int]:
    """Snapshot file name -> its revision, of the files the backups left on the claim."""
    found = {}
    for path in directory.iterdir():
        match = SNAPSHOT_NAME.fullmatch(path.name)
        if match:
            found[path.name] = int(match.group(1))
    return found


def keys_at(gateway: EtcdGateway, sb: Sandbox, release: str, revision: int = 0) -> dict[str, int]:
    """Every key of the cluster -> its mod revision, read from the first member that answers
    (at `revision` when given)."""
    body: dict[str, object] = {"key": base64.b64encode(b"\0").decode()}
    body["range_end"] = base64.b64encode(b"\0").decode()
    if revision:
        body["revision"] = revision
    errors = []
    for endpoint in endpoints(sb.status(), statefulset_pods(sb, release)):
        try:
            answer = gateway.call(endpoint, "/v3/kv/range", body)
        except OSError as err:
            errors.append(err)
            continue
        return {
            base64.b64decode(kv["key"]).decode(): int(kv["mod_revision"])
            for kv in answer.get("kvs") or []  # type: ignore[union-attr]
        }
    raise AssertionError(f"no member of {release} answered: {errors}")


def restore_from_claim(sb: Sandbox, release: str, snapshot: str) -> None:
    sb.upgrade(
        str(CHART),
        "--name",
        release,
        "--set",
        "restore.snapshot.source=pvc,restore.snapshot.pvc.claim=etcd-backup,"
        f"restore.snapshot.pvc.path={snapshot}",
        timeout=300,
    )


def record_of(sb: Sandbox, release: str) -> dict[str, str]:
    found = sandbox_json(sb, "get", "configmap", f"{release}-cluster-record", "--ignore-not-found")
    return dict((found or {}).get("data") or {})


def test_backups_on_a_claim_restore_into_a_new_release_with_every_acknowledged_write(
    sandbox, writer
) -> None:
    sb = sandbox(
        str(CHART),
        "--set",
        "backup.enabled=true,backup.pvc.enabled=true,backup.keep=2,backup.suspend=true",
        timeout=300,
    )
    ledger: Ledger = writer(sb)
    wait_for(lambda: len(ledger.acknowledged) >= 300, "300 acknowledged writes", timeout=60)

    run_backup_job(sb, "by-hand-1")
    directory = claim_directory(sb, "etcd-backup")
    assert directory is not None, "the backup claim etcd-backup is not bound"
    assert len(snapshots(directory)) == 1

    acknowledged_before = list(ledger.acknowledged)
    run_backup_job(sb, "by-hand-2")
    found = snapshots(directory)
    assert len(found) == 2
    newest = max(found)  # the names sort by their UTC time
    revision = found[newest]

    wait_for(
        lambda: len(ledger.acknowledged) >= len(acknowledged_before) + 300,
        "300 more acknowledged writes after the backup",
        timeout=60,
    )
    run_backup_job(sb, "by-hand-3")
    ledger.stop()
    after_third = snapshots(directory)
    assert len(after_third) == 2, f"keep=2 left {sorted(after_third)}"
    assert newest in after_third
    assert min(found) not in after_third, "the oldest snapshot was not pruned"

    gateway = EtcdGateway()
    at_snapshot = keys_at(gateway, sb, "etcd", revision)
    assert all(f"/ledger/{n:08d}" in at_snapshot for n in acknowledged_before)

    restore_from_claim(sb, "etcd-restored", newest)
    restored = keys_at(gateway, sb, "etcd-restored")
    missing = [n for n in acknowledged_before if f"/ledger/{n:08d}" not in restored]
    assert missing == [], f"{len(missing)} acknowledged writes missing after the restore"
    assert restored == at_snapshot
    assert max(restored.values()) <= revision

    def record_says_restored() -> bool:
        return record_of(sb, "etcd-restored").get("restoredFrom") == f"pvc:etcd-backup/{newest}"

    wait_for(record_says_restored, "the cluster record to name the snapshot", timeout=90)
    # A quorum of the members started on the restored snapshot (a member that comes up after
    # the cluster formed joins it instead); none bootstrapped an empty cluster.
    restored_from = f"restored from pvc:/var/lib/etcd-restore-source/{newest}"
    logs = {pod: sb.logs(pod, "prepare") for pod in statefulset_pods(sb, "etcd-restored")}
    assert sum(restored_from in log for log in logs.values()) >= 2, logs
    assert not any(BOOTSTRAP in log for log in logs.values()), logs


def test_quorum_lost_for_good_is_recovered_by_the_runbook_from_the_last_backup(
    sandbox, writer
) -> None:
    """README, "Disaster recovery": two of three volumes gone for good; nothing automatic
    happens; a person restores the last backup into a new release, which then holds every key
    up to the snapshot's revision."""
    sb = sandbox(str(CHART), "--set", "backup.enabled=true,backup.pvc.enabled=true", timeout=300)
    ledger: Ledger = writer(sb)
    wait_for(lambda: len(ledger.acknowledged) >= 300, "300 acknowledged writes", timeout=60)
    acknowledged_before = list(ledger.acknowledged)
    run_backup_job(sb, "last-backup")
    directory = claim_directory(sb, "etcd-backup")
    assert directory is not None
    ((snapshot, revision),) = snapshots(directory).items()
    gateway = EtcdGateway()
    at_snapshot = keys_at(gateway, sb, "etcd", revision)

    bootstrapped = {pod: sb.logs(pod, "prepare").count(BOOTSTRAP) for pod in ("etcd-1", "etcd-2")}
    for pod in ("etcd-1", "etcd-2"):
        sb.stop(pod)
        sb.lose_volume(pod)
    ledger.stop()
    for pod in ("etcd-1", "etcd-2"):
        sb.start(pod)
    # 1. Confirm: the members without data wait, none bootstraps, no write is accepted.
    wait_for(lambda: "waiting" in sb.logs("etcd-1", "prepare"), "etcd-1's prepare to wait", 90)
    time.sleep(10)
    for pod in ("etcd-1", "etcd-2"):
        assert sb.logs(pod, "prepare").count(BOOTSTRAP) == bootstrapped[pod]
    assert "record=present -> waiting" in sb.logs("etcd-1", "prepare")
    broken = endpoints(sb.status(), ["etcd-0"])
    with pytest.raises(OSError):
        EtcdGateway(timeout=3).put(broken[0], "/after-the-loss", "refused")
    # 3. Stop the broken members (their claims stay), restore the last backup into a new release.
    sandbox_kubectl(sb, "scale", "statefulset", "etcd", "--replicas=0")
    wait_for(lambda: statefulset_pods(sb) == [], "the broken members to stop", timeout=90)
    restore_from_claim(sb, "etcd-restored", snapshot)
    restored = keys_at(gateway, sb, "etcd-restored")
    assert [n for n in acknowledged_before if f"/ledger/{n:08d}" not in restored] == []
    assert restored == at_snapshot
    wait_for(
        lambda: record_of(sb, "etcd-restored").get("restoredFrom") == f"pvc:etcd-backup/{snapshot}",
        "the cluster record to name the snapshot",
        timeout=90,
    )
    # 4. Check: the restored cluster takes writes.
    gateway.put(endpoints(sb.status(), statefulset_pods(sb, "etcd-restored"))[0], "/after", "ok")


def test_backups_in_a_bucket_restore_into_a_new_release(sandbox, writer, tmp_path: Path) -> None:
    """The same through an S3-compatible server (ci/gobuild/s3server: gofakes3's S3 API behind a
    Signature V4 check) over HTTPS with a private CA, credentials and CA from Secrets."""
    s3 = start_s3_server(tmp_path / "s3")
    try:
        objects = tmp_path / "objects.yaml"
        secrets = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "backup-s3", "namespace": "default"},
                "stringData": {
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3-ca", "namespace": "default"},
                "stringData": {"ca.crt": s3.ca_file.read_text()},
            },
        ]
        objects.write_text("---\n".join(json.dumps(s) + "\n" for s in secrets))
        bucket = (
            f"backup.s3.enabled=true,backup.s3.endpoint={s3.endpoint},backup.s3.bucket={s3.bucket},"
            "backup.s3.prefix=prod/,backup.s3.forcePathStyle=true,"
            "backup.s3.existingSecret=backup-s3,backup.s3.caSecret=s3-ca"
        )
        sb = sandbox(
            str(CHART),
            "--objects",
            str(objects),
            "--set",
            f"backup.enabled=true,backup.suspend=true,backup.keep=1,{bucket}",
            timeout=300,
        )
        ledger: Ledger = writer(sb)
        wait_for(lambda: len(ledger.acknowledged) >= 300, "300 acknowledged writes", timeout=60)
        acknowledged_before = list(ledger.acknowledged)
        run_backup_job(sb, "to-the-bucket-1")
        run_backup_job(sb, "to-the-bucket-2")
        ledger.stop()
        client = S3Client(S3Settings.from_env(s3.env(prefix="prod/")))
        (key,) = client.list_keys("prod/")  # keep=1 pruned the first
        match = SNAPSHOT_NAME.fullmatch(key.removeprefix("prod/"))
        assert match is not None, key
        gateway = EtcdGateway()
        at_snapshot = keys_at(gateway, sb, "etcd", int(match.group(1)))

        sb.upgrade(
            str(CHART),
            "--name",
            "etcd-restored",
            "--set",
            f"{bucket},restore.snapshot.source=s3,restore.snapshot.s3.key={key}",
            timeout=300,
        )
        restored = keys_at(gateway, sb, "etcd-restored")
        assert [n for n in acknowledged_before if f"/ledger/{n:08d}" not in restored] == []
        assert restored == at_snapshot
        wait_for(
            lambda: record_of(sb, "etcd-restored").get("restoredFrom") == f"s3://{s3.bucket}/{key}",
            "the cluster record to name the object",
            timeout=90,
        )
    finally:
        s3.stop()
