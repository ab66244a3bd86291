"""Pure decisions of the scale-down hook and the learner wait (issue 14, items 4 and 7)."""

from __future__ import annotations

import time

import pytest
from members import ClusterView, Member
from prepare import LearnerWait, peer_url_moved
from scale_down_decision import SCALE_DOWN_WAY_OUT, unreachable_verdict
from settings import Settings
from start_decision import stuck_learner_message
from watch import WatchState, removed_member_step

D = "etcd-headless.ns.svc.cluster.local"


def member(pod: str, member_id: str, started: bool, learner: bool) -> object:
    clients = (f"http://{pod}.{D}:2379",) if started else ()
    name = pod if started else ""
    return Member(member_id, name, (f"http://{pod}.{D}:2380",), clients, learner)


@pytest.mark.parametrize(
    ("replicas", "state", "live", "go_on", "start"),
    [
        (3, "present", 3, True, "nothing to remove: not a scale-down (the StatefulSet has 3"),
        (5, "present", 3, True, "nothing to remove: not a scale-down (the StatefulSet has 3"),
        (3, "absent", 0, True, "nothing to remove: no StatefulSet, so no member pod runs"),
        (3, "present", 5, False, "refusing: a scale-down from 5 to 3 needs a healthy cluster"),
        (1, "present", 2, False, "refusing: a scale-down from 2 to 1 needs a healthy cluster"),
        (3, "unknown", 0, False, "refusing: cannot tell whether this is a scale-down (HTTP 403"),
    ],
)
def test_with_no_member_answering_only_a_real_scale_down_is_refused(
    replicas: int, state: str, live: int, go_on: bool, start: str
) -> None:
    verdict = unreachable_verdict(replicas, state, live, "HTTP 403 forbidden")
    assert verdict[0] is go_on
    assert verdict[1].startswith(start), verdict


def test_the_way_out_names_both_switches_and_what_they_risk() -> None:
    way_out = SCALE_DOWN_WAY_OUT
    assert "`helm upgrade --no-hooks`" in way_out
    assert "scaleDown.enabled=false" in way_out
    assert "count against quorum" in way_out and "etcdctl member remove" in way_out


def test_the_learner_wait_counts_learners_only_and_from_when_each_was_first_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    voters = [member(f"etcd-{i}", str(10 + i), True, False) for i in range(3)]
    learner = member("etcd-3", "26", False, True)
    unstarted_voter = member("etcd-3", "27", False, False)
    own = (f"http://etcd-4.{D}:2380",)
    wait = LearnerWait(60)
    stuck = ClusterView((*voters, learner), "10", "99", "")
    assert wait.overdue(stuck, own) == ""
    clock[0] = 159.0
    assert wait.overdue(stuck, own) == ""
    clock[0] = 160.0
    assert wait.overdue(stuck, own) == (
        "giving up after 60s (--learner-wait 60): learner etcd-3 (1a) has not become a voter"
        " (never started); every later member change waits for it. If its pod cannot run or"
        " catch up, remove it: `helm upgrade` with replicas=3 (the scale-down hook removes"
        " members above the new count, learners included), or etcdctl member remove 1a"
    )
    # An unstarted voter (a bootstrap member on its way) is never given up on.
    other = ClusterView((*voters, unstarted_voter), "10", "99", "")
    clock[0] = 1000.0
    assert wait.overdue(other, own) == ""
    # A learner seen again later starts its own count.
    assert wait.overdue(stuck, own) == ""
    assert LearnerWait(0).overdue(stuck, own) == ""
    assert wait.overdue(None, own) == ""


def test_a_started_learner_that_does_not_catch_up_is_named_as_such() -> None:
    learner = member("etcd-4", "255", True, True)
    message = stuck_learner_message(learner, 301.4, 300)
    assert message.startswith(
        "giving up after 301s (--learner-wait 300): learner etcd-4 (ff) has not become a voter"
        " (started, not in sync with the leader);"
    )
    assert "`helm upgrade` with replicas=4 " in message


def test_the_same_member_under_a_new_peer_url_is_found_by_its_name() -> None:
    voters = [member(f"etcd-{i}", str(10 + i), True, False) for i in range(3)]
    view = ClusterView(tuple(voters), "10", "99", "")
    moved = (f"http://etcd-2.{D}:2381",)
    assert peer_url_moved(view, "etcd-2", moved) == voters[2]
    # Listed under its own URL already, another name, or a member that never started: no.
    assert peer_url_moved(view, "etcd-2", voters[2].peer_urls) is None
    assert peer_url_moved(view, "etcd-3", moved) is None
    unstarted = ClusterView((*voters[:2], member("etcd-2", "12", False, True)))
    assert peer_url_moved(unstarted, "etcd-2", moved) is None
    assert peer_url_moved(None, "etcd-2", moved) is None


class FakeKube:
    """Answers GET StatefulSet and DELETE Pod the way the API server would."""

    def __init__(self, replicas: int | None, delete_status: int = 200):
        self.replicas = replicas
        self.delete_status = delete_status
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        self.calls.append((method, path))
        if method == "GET":
            if self.replicas is None:
                return 404, {"message": "not found"}
            return 200, {"spec": {"replicas": self.replicas}}
        return self.delete_status, {"message": "forbidden"}


def removed(kube: FakeKube, rejoin_after: float, record: str = "rec") -> tuple:
    settings = Settings.from_env(
        {"POD_NAME": "etcd-3", "POD_NAMESPACE": "ns", "ETCD_AGENT_RECORD": record}
    )
    state = WatchState(rejoin_after=rejoin_after)
    return settings, state, removed_member_step(settings, kube, state, "cluster=x")


def test_a_removed_member_without_api_access_or_rejoin_says_how_to_recover() -> None:
    for kube, rejoin_after, record in ((FakeKube(4), 0, "rec"), (FakeKube(4), 60, "")):
        _, state, message = removed(kube, rejoin_after, record)
        assert message == (
            "cluster=x member=absent -> this member was removed from the cluster, and etcd exits"
            " at once on every restart: recreate the pod (kubectl delete pod etcd-3) so that its"
            " prepare joins again"
        )
        assert kube.calls == [] and not state.pod_deleted


def test_a_removed_member_never_deletes_its_pod_when_it_cannot_read_the_statefulset() -> None:
    kube = FakeKube(None)
    _, state, message = removed(kube, 0.0001)
    assert message.endswith(
        "(StatefulSet ns/etcd not found): recreate the pod (kubectl delete pod etcd-3) so that"
        " its prepare joins again"
    )
    assert [method for method, _ in kube.calls] == ["GET"] and not state.pod_deleted


def test_a_refused_pod_deletion_is_reported_and_not_taken_for_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [10.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    kube = FakeKube(4, delete_status=403)
    settings, state, first = removed(kube, 5)
    assert "deleting pod etcd-3 once this has lasted 5s" in first
    clock[0] = 15.0
    message = removed_member_step(settings, kube, state, "cluster=x")
    assert message == (
        "cluster=x member=absent -> this member was removed from the cluster; cannot delete pod"
        " etcd-3: HTTP 403 forbidden: recreate the pod (kubectl delete pod etcd-3) so that its"
        " prepare joins again"
    )
    assert kube.calls[-1] == ("DELETE", "/api/v1/namespaces/ns/pods/etcd-3")
    assert not state.pod_deleted
