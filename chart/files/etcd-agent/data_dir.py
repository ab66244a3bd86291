"""The member's data directory: present, absent or damaged, and moving it aside (never deleting)."""

from __future__ import annotations

import datetime
import os

from errors import AgentError
from start_decision import DATA_ABSENT, DATA_DAMAGED, DATA_PRESENT


def utc_stamp(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")


def _holds_files(path: str) -> bool:
    return any(files for _, _, files in os.walk(path))


def member_data_state(data_dir: str, wal_dir: str = "") -> str:
    """present: a WAL (`*.wal` in the WAL directory, etcd's own test) beside its db.
    damaged: files without that pair. A snapshot or db without a WAL is what a lost WAL claim or a
    first start that failed early leaves; etcd would start a fresh raft log on it under the old
    member ID, and a WAL without the db (a lost data claim) has nothing to replay onto.
    absent: no file at all (empty directories and lost+found do not count)."""
    member = os.path.join(data_dir, "member")
    wal = wal_dir or os.path.join(member, "wal")
    try:
        has_wal = any(name.endswith(".wal") for name in os.listdir(wal))
    except OSError:
        has_wal = False
    if has_wal and os.path.isfile(os.path.join(member, "snap", "db")):
        return DATA_PRESENT
    if has_wal or _holds_files(member) or (wal_dir and _holds_files(wal_dir)):
        return DATA_DAMAGED
    return DATA_ABSENT


def _aside_name(path: str, stamp: str) -> str:
    target = f"{path.rstrip('/')}.removed-{stamp}"
    candidate, n = target, 1
    while os.path.exists(candidate):
        candidate, n = f"{target}-{n}", n + 1
    return candidate


def move_data_aside(data_dir: str, wal_dir: str, stamp: str) -> list[str]:
    """Rename the data (and a separate WAL) directory beside itself; never deletes anything."""
    moved = []
    for path in (data_dir, wal_dir):
        if not path or not os.path.exists(path):
            continue
        target = _aside_name(path, stamp)
        try:
            os.rename(path, target)
        except OSError as err:
            raise AgentError(f"cannot move {path} aside to {target}: {err.strerror}") from err
        moved.append(target)
    return moved
