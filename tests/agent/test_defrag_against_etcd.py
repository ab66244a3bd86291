"""`defrag` against real etcd members (each release the tests run), under writes.

Same harness as test_hook_safety.py: pods as processes on their own loopback address and name;
the command runs as in the CronJob's pod (it needs no Kubernetes API)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_harness import Pod, Release

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
NOSPACE = "etcdserver: mvcc: database space exceeded"
DEFRAGMENTING = re.compile(
    r"^member-agent defrag: (\S+) \((leader|follower)\) .* -> defragmenting$"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def start(release: Release, replicas: int = 3, quota: int = 0) -> Path:
    template = release.template(replicas)
    if quota:
        text = template.read_text().replace(
            '"log-level"', f'"quota-backend-bytes": {quota},\n  "log-level"'
        )
        template.write_text(text)
    release.bootstrap(template, replicas)
    return template


def status(release: Release, pod: Pod) -> dict[str, Any]:
    return dict(release.call(pod, "/v3/maintenance/status", {}))


def db_sizes(release: Release, pods: list[Pod]) -> dict[str, int]:
    return {pod.name: int(status(release, pod)["dbSize"]) for pod in pods}


def leader_name(release: Release, pod: Pod) -> str:
    leader = str(status(release, pod)["leader"])
    (name,) = [m["name"] for m in release.members(pod) if str(m["ID"]) == leader]
    return str(name)


def put(release: Release, pod: Pod, key: str, value: bytes) -> str:
    """ "" when etcd acknowledged the write, else its error message."""
    body = json.dumps({"key": b64(key.encode()), "value": b64(value)}).encode()
    request = urllib.request.Request(pod.url + "/v3/kv/put", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=release.context) as response:
            response.read()
    except urllib.error.HTTPError as err:
        return str(json.loads(err.read() or b"{}").get("message", f"HTTP {err.code}"))
    return ""


def fill(release: Release, pod: Pod, count: int, size: int) -> int:
    """`count` keys under fill/ of `size` bytes each; stops at the first NOSPACE refusal and
    returns how many were written."""
    value = b"x" * size
    for i in range(count):
        refused = put(release, pod, f"fill/{i:05d}", value)
        if refused == NOSPACE:
            return i
        assert refused == "", refused
    return count


def delete_and_compact(release: Release, pod: Pod) -> None:
    answer = release.call(
        pod, "/v3/kv/deleterange", {"key": b64(b"fill/"), "range_end": b64(b"fill0")}
    )
    revision = int(answer["header"]["revision"])
    release.call(pod, "/v3/kv/compaction", {"revision": revision, "physical": True}, timeout=30)


class Writer:
    """Writes ledger/N round-robin through every member until stopped; keeps what etcd
    acknowledged."""

    def __init__(self, release: Release, pods: list[Pod]):
        self.release = release
        self.pods = pods
        self.acknowledged: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"ledger/{n:06d}"
            try:
                self.release.put(self.pods[n % len(self.pods)], key, str(n))
            except (OSError, urllib.error.HTTPError):
                self.failures += 1
            else:
                self.acknowledged.append(key)
            n += 1

    def lost(self, via: Pod) -> list[str]:
        return [key for key in self.acknowledged if self.release.get(via, key) is None]


def defrag(release: Release, *args: str) -> subprocess.CompletedProcess[str]:
    return release.agent(release.pods[0], "defrag", "--replicas", "3", *args, timeout=180)


def test_defrag_shrinks_every_member_leader_last_and_loses_no_write(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=3)
    start(release)
    pods = release.pods
    assert fill(release, pods[0], 160, 64 * 1024) == 160
    delete_and_compact(release, pods[0])
    before = db_sizes(release, pods)
    assert min(before.values()) > 8 * MIB, before
    leader = leader_name(release, pods[0])

    with Writer(release, pods) as writer:
        result = defrag(release, "--threshold-percent", "50", "--min-db-size", str(MIB))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    order = [m.groups() for m in map(DEFRAGMENTING.match, lines) if m]
    assert [role for _, role in order] == ["follower", "follower", "leader"], lines
    assert order[-1][0] == leader, lines
    assert sorted(name for name, _ in order) == ["etcd-0", "etcd-1", "etcd-2"]
    assert lines[-1].endswith("-> done: 3 of 3 members defragmented"), lines

    after = db_sizes(release, pods)
    for name in before:
        assert after[name] < before[name] / 2, (before, after)
    assert len(writer.acknowledged) > 20, (writer.acknowledged, writer.failures)
    assert writer.lost(pods[1]) == []
    print("\n".join(lines))
    print(f"defrag under writes: {len(writer.acknowledged)} writes acknowledged, none lost")


def test_defrag_skips_members_below_the_threshold(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=3)
    start(release)
    result = defrag(release, "--threshold-percent", "30", "--min-db-size", str(64 * MIB))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    skipped = [line for line in lines if "-> skipped: smaller than defrag.minDbSizeBytes" in line]
    assert len(skipped) == 3, lines
    assert not any(DEFRAGMENTING.match(line) for line in lines), lines
    assert lines[-1].endswith("-> done: 0 of 3 members defragmented"), lines


def test_defrag_disarms_nospace_once_the_space_is_back(
    release_factory: Callable[..., Release],
) -> None:
    quota = 16 * MIB
    release = release_factory(pods=3)
    start(release, quota=quota)
    pods = release.pods
    written = fill(release, pods[0], 1000, 256 * 1024)
    assert 0 < written < 1000
    assert put(release, pods[1], "after/full", b"refused") == NOSPACE

    # Deleting and compacting frees pages inside the file, but the alarm stays and so does the
    # file's size: writes are still refused.
    delete_and_compact(release, pods[0])
    assert put(release, pods[1], "after/compact", b"refused") == NOSPACE

    # The default threshold and minimum size would skip these small files; the alarm overrides.
    result = defrag(release, "--quota-bytes", str(quota), "--min-db-size", str(64 * MIB))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len([line for line in lines if DEFRAGMENTING.match(line)]) == 3, lines
    assert re.fullmatch(
        r"member-agent defrag: NOSPACE alarm on [a-z0-9, -]+ -> disarmed: every database is"
        r" below the quota 16\.0MiB \(largest [0-9.]+[KM]iB\); writes are accepted again",
        lines[-1],
    ), lines
    release.put(pods[1], "after/defrag", "accepted")
    assert release.get(pods[2], "after/defrag") == "accepted"
    alarms = release.call(pods[0], "/v3/maintenance/alarm", {"action": "GET"})
    assert not alarms.get("alarms"), alarms


def test_defrag_refuses_to_start_while_a_member_is_down(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=3)
    start(release)
    release.stop_etcd(release.pods[2])
    # Down, not a lost quorum: the other two have a leader (again, if etcd-2 led).
    release.wait_for("a leader", lambda: bool(status(release, release.pods[0])["leader"]))
    release.wait_for("a quorum", lambda: len(release.members(release.pods[0])) == 3)
    result = defrag(release, "--threshold-percent", "0", "--min-db-size", "0")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(
        r"member-agent defrag: cluster=reachable\(3 members, leader \w+\) -> refusing to start:"
        r" not every member is healthy: etcd-2: .+",
        line,
    ), line
