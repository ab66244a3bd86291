"""Starting a release from a snapshot (restore.snapshot), in three init containers:

1. `restore-fetch` (this module, agent image): decide whether this member restores (only where
   it would bootstrap `new`: no data, no cluster record, a bootstrap member), then put the
   snapshot at RESTORE_DIR/snapshot.db: the release's snapshot, fetched from the claim or the
   bucket and checked, or else an empty one.
2. `restore` (etcd image): `etcdutl snapshot restore` of that file into RESTORE_DIR/data with this
   release's member name, peer URLs and token. The etcd image has no shell, so this container
   cannot be skipped; restoring the empty snapshot into scratch space is how it does nothing.
3. `prepare`: `adopt_restored_data` moves RESTORE_DIR/data into the empty data directory when
   step 1 chose to restore, and removes RESTORE_DIR either way; then the usual start decision
   sees a member's data and starts on it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping

from data_dir import member_data_state, move_data_aside, utc_stamp
from errors import AgentError
from etcd_config import load_template
from kube_client import KubeClient, read_record
from runtime import Backoff, Deadline, Log, wait_or_give_up
from s3_client import S3Client, S3Settings
from settings import Settings
from snapshot_file import empty_snapshot, read_snapshot
from start_decision import DATA_ABSENT, DATA_PRESENT, RESTORE, WAIT, decide_restore
from urls import parse_initial_cluster

SOURCE_FILE = "source.json"


def restore_dir_of(data_dir: str) -> str:
    """Beside the data directory, on the same volume: the staged data moves in by a rename."""
    return os.path.join(os.path.dirname(data_dir.rstrip("/")), "restore")


def _fetch(source: str, pvc_file: str, s3_key: str, env: Mapping[str, str], target: str) -> str:
    """Copy the release's snapshot to `target`; returns where it came from."""
    if source == "pvc":
        if not os.path.isfile(pvc_file):
            raise AgentError(
                f"{pvc_file}: no such snapshot file on the claim (restore.snapshot.pvc.path)"
            )
        with open(pvc_file, "rb") as original, open(target, "wb") as copy:
            shutil.copyfileobj(original, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        return f"pvc:{pvc_file}"
    if source == "s3":
        if not s3_key:
            raise AgentError("--s3-key is empty (restore.snapshot.s3.key)")
        client = S3Client(S3Settings.from_env(env))
        client.get_to_file(s3_key, target)
        return client.where(s3_key)
    raise AgentError(f"--source {source!r}: must be pvc or s3")


def run_restore_fetch(
    settings: Settings,
    env: Mapping[str, str],
    log: Log,
    source: str,
    pvc_file: str,
    s3_key: str,
    timeout: float = 0,
) -> int:
    config = load_template(settings.template, env)
    data_dir, wal_dir = str(config["data-dir"]), str(config.get("wal-dir") or "")
    restore_dir = restore_dir_of(data_dir)
    name = str(config["name"])
    bootstrap = [member for member, _ in parse_initial_cluster(str(config["initial-cluster"]))]
    kube = KubeClient(env)
    backoff, deadline = Backoff(), Deadline(timeout)
    while True:
        data = member_data_state(data_dir, wal_dir)
        record, _, detail = read_record(kube, settings.namespace, settings.record)
        state = str(config.get("initial-cluster-state", "new"))
        action, why = decide_restore(data, record, name, bootstrap, state)
        seen = f"data={data} record={record}"
        if action != WAIT:
            break
        if not wait_or_give_up(log, backoff, deadline, seen, why, detail):
            return 2
    try:
        shutil.rmtree(restore_dir, ignore_errors=True)
        os.makedirs(restore_dir)
        snapshot = os.path.join(restore_dir, "snapshot.db")
        if action != RESTORE:
            with open(snapshot, "wb") as handle:
                handle.write(empty_snapshot())
            log(f"{seen} -> not restoring: {why}")
            return 0
        origin = _fetch(source, pvc_file, s3_key, env, snapshot)
        facts = read_snapshot(snapshot)
        with open(os.path.join(restore_dir, SOURCE_FILE), "w", encoding="utf-8") as handle:
            json.dump({"from": origin, "revision": facts.revision, "sha256": facts.sha256}, handle)
    except OSError as err:
        raise AgentError(f"cannot stage the snapshot in {restore_dir}: {err.strerror}") from err
    log(
        f"{seen} -> {why}: {origin}, revision {facts.revision},"
        f" sha256 {facts.sha256} (checked); etcdutl restores it next"
    )
    return 0


def adopt_restored_data(data_dir: str, wal_dir: str) -> str:
    """In `prepare`, before the start decision: move the data etcdutl restored into the empty
    data directory, and remove the restore's scratch space. Returns what was done ("" when no
    restore ran)."""
    restore_dir = restore_dir_of(data_dir)
    if not os.path.isdir(restore_dir):
        return ""
    staged = os.path.join(restore_dir, "data")
    done = ""
    try:
        with open(os.path.join(restore_dir, SOURCE_FILE), encoding="utf-8") as handle:
            origin = json.load(handle)
    except (OSError, ValueError):
        origin = None
    if (
        origin is not None
        and not wal_dir
        and member_data_state(data_dir) == DATA_ABSENT
        and member_data_state(staged) == DATA_PRESENT
    ):
        if os.path.exists(data_dir):
            # Empty directories only (DATA_ABSENT); moved aside all the same, never deleted.
            move_data_aside(data_dir, "", utc_stamp())
        try:
            os.rename(staged, data_dir)
        except OSError as err:
            raise AgentError(f"cannot move {staged} to {data_dir}: {err.strerror}") from err
        done = (
            f"restored from {origin.get('from')} (revision {origin.get('revision')}, sha256"
            f" {origin.get('sha256')})"
        )
    shutil.rmtree(restore_dir, ignore_errors=True)
    return done
