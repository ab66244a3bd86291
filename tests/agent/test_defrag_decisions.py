"""The defragmentation's pure decisions: which member next, and when a NOSPACE alarm may go."""

from __future__ import annotations

import pytest
from defrag_decision import (
    DEFAULT_QUOTA_BYTES,
    MemberSpace,
    Policy,
    effective_quota,
    mib,
    next_member,
    over_quota,
    verdict,
)

MIB = 1024 * 1024
POLICY = Policy(threshold_percent=30, min_db_bytes=10 * MIB)


def space(name: str, size_mib: float, in_use_mib: float, leader: bool = False) -> MemberSpace:
    return MemberSpace(name.upper(), name, int(size_mib * MIB), int(in_use_mib * MIB), leader)


def order(spaces: list[MemberSpace], policy: Policy = POLICY, nospace: bool = False) -> list[str]:
    """The names in the order a run defragments them (each member once)."""
    done: list[str] = []
    while (target := next_member(spaces, policy, nospace, done)) is not None:
        done.append(target.id)
    return [name.lower() for name in done]


def test_sizes_in_the_log() -> None:
    assert mib(11 * MIB + MIB // 10) == "11.1MiB"
    assert mib(48 * 1024) == "48KiB"


def test_fragmentation_is_the_free_share_of_the_file() -> None:
    assert space("a", 100, 25).fragmented_percent == 75.0
    assert space("a", 100, 100).fragmented_percent == 0.0
    assert space("a", 0, 0).fragmented_percent == 0.0
    # dbSizeInUse above dbSize (two reads apart) is no negative fragmentation.
    assert space("a", 10, 12).fragmented_percent == 0.0
    assert space("a", 100, 25).describe() == (
        "a (follower) db=100.0MiB in-use=25.0MiB fragmented=75%"
    )


def test_followers_by_name_first_and_the_leader_last() -> None:
    spaces = [
        space("etcd-0", 100, 10, leader=True),
        space("etcd-2", 100, 10),
        space("etcd-1", 50, 5),
    ]
    assert order(spaces) == ["etcd-1", "etcd-2", "etcd-0"]


def test_the_leader_alone_when_only_it_is_fragmented() -> None:
    spaces = [
        space("etcd-0", 100, 90),
        space("etcd-1", 100, 10, leader=True),
        space("etcd-2", 100, 95),
    ]
    assert order(spaces) == ["etcd-1"]


@pytest.mark.parametrize(
    ("size", "in_use", "go", "why"),
    [
        (100, 70, True, "at or above defrag.thresholdPercent (30%)"),
        (100, 71, False, "below defrag.thresholdPercent (30%)"),
        (9.9, 1, False, "smaller than defrag.minDbSizeBytes (10.0MiB)"),
        (10, 1, True, "at or above defrag.thresholdPercent (30%)"),
    ],
)
def test_threshold_and_minimum_size(size: float, in_use: float, go: bool, why: str) -> None:
    assert verdict(space("a", size, in_use), POLICY, nospace=False) == (go, why)


def test_with_a_nospace_alarm_every_member_with_free_pages_counts() -> None:
    spaces = [space("etcd-0", 8, 7.9, leader=True), space("etcd-1", 1, 0.5), space("etcd-2", 8, 8)]
    assert order(spaces, nospace=False) == []
    assert order(spaces, nospace=True) == ["etcd-1", "etcd-0"]
    assert verdict(spaces[2], POLICY, nospace=True) == (
        False,
        "nothing to give back (no free pages)",
    )


def test_each_member_once_even_when_still_fragmented() -> None:
    spaces = [space("etcd-0", 100, 10), space("etcd-1", 100, 10, leader=True)]
    assert next_member(spaces, POLICY, False, {"ETCD-0", "ETCD-1"}) is None


def test_the_alarm_goes_only_when_every_database_is_below_the_quota() -> None:
    quota = 8 * MIB
    below = [space("etcd-0", 7.9, 1), space("etcd-1", 2, 1)]
    assert over_quota(below, quota) == []
    at = [space("etcd-0", 8, 1), space("etcd-1", 2, 1)]
    assert [s.name for s in over_quota(at, quota)] == ["etcd-0"]
    assert effective_quota(0) == DEFAULT_QUOTA_BYTES == 2 * 1024 * MIB
    assert effective_quota(quota) == quota
