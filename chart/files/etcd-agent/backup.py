"""`backup`, the last step of the backup Job: name the checked snapshot by its time and revision,
store it on the claim and/or in the bucket, then prune this release's older snapshots."""

from __future__ import annotations

import datetime
import os
import re
import shutil
from collections.abc import Iterable, Mapping

from errors import AgentError
from runtime import Log
from s3_client import S3Client, S3Settings
from snapshot_file import read_snapshot


def snapshot_name(release: str, when: datetime.datetime, revision: int) -> str:
    return f"{release}-{when.strftime('%Y%m%dT%H%M%SZ')}-r{revision}.db"


def snapshot_pattern(release: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(release)}-([0-9]{{8}}T[0-9]{{6}}Z)-r([0-9]+)\.db")


def to_prune(names: Iterable[str], release: str, keep: int) -> list[str]:
    """This release's snapshots beyond the newest `keep` (by time, then revision), oldest first.
    Names of any other form are not ours and never listed."""
    pattern = snapshot_pattern(release)
    ours = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            ours.append((match.group(1), int(match.group(2)), name))
    ours.sort()
    return [name for _, _, name in ours[: max(0, len(ours) - keep)]]


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def store_in_directory(snapshot: str, directory: str, name: str) -> str:
    """Copy under a hidden temporary name, fsync, rename: a snapshot file under its final name is
    always complete."""
    target = os.path.join(directory, name)
    partial = os.path.join(directory, f".{name}.part")
    try:
        with open(snapshot, "rb") as source, open(partial, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        os.replace(partial, target)
        _fsync_directory(directory)
    except OSError as err:
        raise AgentError(f"cannot store the snapshot as {target}: {err.strerror}") from err
    return target


def prune_directory(directory: str, release: str, keep: int) -> list[str]:
    removed = []
    try:
        for name in to_prune(os.listdir(directory), release, keep):
            os.remove(os.path.join(directory, name))
            removed.append(name)
    except OSError as err:
        raise AgentError(f"cannot prune old snapshots in {directory}: {err.strerror}") from err
    return removed


def prune_bucket(client: S3Client, prefix: str, release: str, keep: int) -> list[str]:
    names = {
        key[len(prefix) :]: key
        for key in client.list_keys(prefix + release + "-")
        if "/" not in key[len(prefix) :]
    }
    removed = []
    for name in to_prune(names, release, keep):
        client.delete(names[name])
        removed.append(names[name])
    return removed


def run_backup(
    env: Mapping[str, str],
    log: Log,
    snapshot: str,
    release: str,
    keep: int,
    directory: str,
    s3: bool,
    now: datetime.datetime | None = None,
) -> int:
    if not directory and not s3:
        raise AgentError("nowhere to store the snapshot: give --directory, --s3 or both")
    if keep < 1:
        raise AgentError(f"--keep {keep}: must be 1 or more")
    client = S3Client(S3Settings.from_env(env)) if s3 else None
    facts = read_snapshot(snapshot)
    if facts.revision == 0:
        raise AgentError(f"{snapshot}: no revision found in the `key` bucket; not an etcd snapshot")
    name = snapshot_name(release, now or datetime.datetime.now(datetime.UTC), facts.revision)
    log(
        f"snapshot {snapshot}: revision {facts.revision}, {facts.size} bytes,"
        f" sha256 {facts.sha256} (checked)"
    )
    if directory:
        stored = store_in_directory(snapshot, directory, name)
        removed = prune_directory(directory, release, keep)
        log(f"stored {stored}; removed {len(removed)} older: {', '.join(removed) or 'none'}")
    if client is not None:
        key = client.settings.prefix + name
        client.put_file(key, snapshot, facts.file_sha256)
        removed = prune_bucket(client, client.settings.prefix, release, keep)
        log(
            f"uploaded {client.where(key)}; removed {len(removed)} older:"
            f" {', '.join(removed) or 'none'}"
        )
    log(f"backup {name} done")
    return 0
