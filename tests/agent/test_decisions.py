"""The member agent's pure functions: join decisions, placeholders, flags, URLs, auth.json."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from auth_spec import AuthSpec, Permission, Role, User, parse_auth_spec
from data_dir import member_data_state, move_data_aside, utc_stamp
from errors import AgentError
from etcd_client import prefix_range_end, read_secret_file
from etcd_config import apply_extra_flags, expand, expand_tree, load_template, typed_value
from members import ClusterView, Member
from runtime import Backoff
from scale_down_decision import remaining_voters, scale_down_targets
from start_decision import (
    RECORD_ABSENT,
    RECORD_UNCHECKED,
    Decision,
    StartFacts,
    decide_start,
    join_initial_cluster,
)
from urls import (
    client_url_of,
    hex_id,
    normalize_url,
    ordinal_of,
    parse_initial_cluster,
    pod_name_of,
    url_host,
)

D = "etcd-headless.ns.svc.cluster.local"


def url(pod: str, port: int = 2380) -> str:
    return f"http://{pod}.{D}:{port}"


def member(
    pod: str,
    member_id: str,
    started: bool = True,
    learner: bool = False,
    named: bool | None = None,
) -> object:
    """A member as etcd lists it; unstarted added members have no name, bootstrap ones do."""
    name = pod if (started if named is None else named) else ""
    clients = (url(pod, 2379),) if started else ()
    return Member(member_id, name, (url(pod),), clients, learner)


def cluster(*members: object, leader: str = "17") -> object:
    return ClusterView(tuple(members), leader, "99", url("etcd-0", 2379))


def facts(**changes: object) -> object:
    base = {
        "name": "etcd-1",
        "peer_urls": (url("etcd-1"),),
        "has_data": False,
        "cluster": None,
        "bootstrap_names": ("etcd-0", "etcd-1", "etcd-2"),
        "template_state": "new",
        "record": RECORD_ABSENT,
        "record_name": "ns/etcd-cluster-record",
    }
    base.update(changes)
    return StartFacts(**base)


# -- decide_start, case by case ------------------------------------------------------------


def test_case1_data_and_cluster_unreachable_starts_as_is() -> None:
    decision = decide_start(facts(has_data=True, record=RECORD_UNCHECKED))
    assert decision == Decision("start", "data=present cluster=unreachable")


def test_case1_data_and_listed_starts_as_is() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-1", "18"))
    decision = decide_start(facts(has_data=True, cluster=view))
    assert decision == Decision(
        "start", "data=present cluster=reachable(2 members, leader 11) listed=yes"
    )


def test_case1_data_of_a_member_added_but_never_published_starts_as_is() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-1", "18", False))
    decision = decide_start(facts(has_data=True, cluster=view))
    assert decision.action == "start"


def test_case2_data_but_not_listed_moves_data_aside_and_joins_as_learner() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-2", "19"))
    decision = decide_start(facts(has_data=True, cluster=view))
    assert decision == Decision(
        "join",
        "data=present cluster=reachable(2 members, leader 11) listed=no",
        move_data_aside=True,
        add_learner=True,
    )


def test_case2_waits_without_moving_data_while_another_change_is_in_flight() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-3", "20", learner=True))
    decision = decide_start(facts(has_data=True, cluster=view))
    assert decision == Decision(
        "wait",
        "data=present cluster=reachable(2 members, leader 11) listed=no",
        "another member change is in flight: etcd-3 (learner)",
    )


def test_case3_started_member_without_data_is_removed_and_added_again() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-1", "18"))
    decision = decide_start(facts(cluster=view))
    assert decision == Decision(
        "join",
        "data=absent cluster=reachable(2 members, leader 11) listed=yes",
        remove_id="18",
        add_learner=True,
    )


def test_case3_started_learner_without_data_is_removed_and_added_again() -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-1", "18", learner=True))
    decision = decide_start(facts(cluster=view))
    assert (decision.action, decision.remove_id, decision.add_learner) == ("join", "18", True)


@pytest.mark.parametrize("named", [False, True], ids=["added", "bootstrap member"])
def test_case3_unstarted_member_is_reused(named: bool) -> None:
    own = member("etcd-1", "18", started=False, named=named)
    busy = member("etcd-3", "20", learner=True)
    view = cluster(member("etcd-0", "17"), own, busy)
    decision = decide_start(facts(cluster=view))
    assert decision == Decision(
        "join", "data=absent cluster=reachable(3 members, leader 11) listed=yes", reuse_id="18"
    )


def test_case3_not_listed_is_added_as_learner() -> None:
    view = cluster(member("etcd-0", "17"))
    decision = decide_start(facts(cluster=view))
    assert decision == Decision(
        "join", "data=absent cluster=reachable(1 members, leader 11) listed=no", add_learner=True
    )


@pytest.mark.parametrize(
    ("other", "why"),
    [
        ({"learner": True}, "etcd-3 (learner)"),
        ({"started": False}, "etcd-3 (not started)"),
        ({"started": False, "named": True}, "etcd-3 (not started)"),
    ],
    ids=["learner", "added, not started", "bootstrap member, not started"],
)
def test_case3_waits_while_another_member_change_is_in_flight(
    other: dict[str, bool], why: str
) -> None:
    view = cluster(member("etcd-0", "17"), member("etcd-3", "20", **other))
    for own in (None, member("etcd-1", "18")):
        members = view.members + ((own,) if own else ())
        decision = decide_start(facts(cluster=cluster(*members)))
        assert decision.action == "wait"
        assert decision.why == f"another member change is in flight: {why}"


def test_case3_leader_unknown_is_said_so() -> None:
    view = cluster(member("etcd-0", "17"), leader="")
    decision = decide_start(facts(cluster=view))
    assert decision.seen == "data=absent cluster=reachable(1 members, leader unknown) listed=no"


@pytest.mark.parametrize("record", ["absent", "disabled"])
def test_case4_bootstrap_member_of_a_never_created_cluster_bootstraps(record: str) -> None:
    decision = decide_start(facts(record=record))
    assert decision == Decision("bootstrap", f"data=absent cluster=unreachable record={record}")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {"name": "etcd-3", "peer_urls": (url("etcd-3"),)},
            "etcd-3 is not a bootstrap member (not in the template's initial-cluster); it can"
            " only join a running cluster",
        ),
        (
            {"template_state": "existing"},
            "the template's initial-cluster-state is existing: this cluster was created before,"
            " so no new one is bootstrapped; waiting for its members",
        ),
        (
            {"record": "present"},
            "the cluster record ns/etcd-cluster-record exists: this cluster was created before"
            " and a second, empty one is never bootstrapped under its name; waiting for its"
            " members (delete ConfigMap ns/etcd-cluster-record only to start over on purpose)",
        ),
        (
            {"record": "unknown"},
            "cannot tell whether the cluster was created (cluster record"
            " ns/etcd-cluster-record unreadable); not bootstrapping",
        ),
    ],
    ids=["not a bootstrap member", "state existing", "record present", "record unreadable"],
)
def test_case4_refuses_to_bootstrap(changes: dict[str, object], why: str) -> None:
    decision = decide_start(facts(**changes))
    record = changes.get("record", "absent")
    assert decision == Decision("wait", f"data=absent cluster=unreachable record={record}", why)


# -- initial-cluster for joining, scale-down targets -----------------------------------------


def test_join_initial_cluster_names_unstarted_members_by_pod_and_drops_the_stale_self() -> None:
    members = [
        member("etcd-0", "17"),
        member("etcd-2", "19", started=False),
        member("etcd-1", "18"),  # the stale self: replaced by this pod's own entry
        Member("21", "etcd-4", (url("etcd-4"), "http://10.0.0.4:2380"), (), False),
    ]
    assert join_initial_cluster(members, "etcd-1", [url("etcd-1")]) == ",".join(
        [
            f"etcd-0={url('etcd-0')}",
            f"etcd-2={url('etcd-2')}",
            f"etcd-4={url('etcd-4')}",
            "etcd-4=http://10.0.0.4:2380",
            f"etcd-1={url('etcd-1')}",
        ]
    )


def test_scale_down_targets_highest_ordinal_first_by_name_or_peer_host() -> None:
    members = [
        member("etcd-0", "1"),
        member("etcd-3", "4"),
        member("etcd-4", "5", started=False),
        member("etcd-10", "6"),
        member("other-7", "7"),
        member("etcd-2", "3"),
    ]
    targets = scale_down_targets(members, "etcd", 3)
    assert [(ordinal, m.id) for ordinal, m in targets] == [(10, "6"), (4, "5"), (3, "4")]
    assert scale_down_targets(members, "etcd", 11) == []


def test_remaining_voters_skip_the_target_learners_and_other_targets() -> None:
    members = [
        member("etcd-0", "1"),
        member("etcd-1", "2", learner=True),
        member("etcd-2", "3"),
        member("etcd-3", "4"),
        member("etcd-4", "5"),
    ]
    keep = remaining_voters(members, "etcd", 3, members[4])
    assert [m.id for m in keep] == ["1", "3"]


def test_member_from_etcd_json_with_omitted_fields() -> None:
    added = Member.from_json({"ID": "7511520526099538801", "peerURLs": [url("etcd-3")]})
    assert added == Member("7511520526099538801", "", (url("etcd-3"),), (), False)
    assert (added.started, added.label) == (False, "etcd-3")
    assert hex_id(added.id) == "683e481ee937e371"
    learner = Member.from_json(
        {"ID": "5", "name": "etcd-3", "peerURLs": [url("etcd-3")], "isLearner": True}
    )
    assert learner.is_learner and learner.label == "etcd-3" and not learner.started


# -- placeholders, extra flags, URLs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "host"),
    [("10.1.2.3", "10.1.2.3"), ("fd00::1", "[fd00::1]"), ("[fd00::1]", "[fd00::1]")],
)
def test_url_host_brackets_ipv6(ip: str, host: str) -> None:
    assert url_host(ip) == host


def test_expand_like_kubernetes() -> None:
    missing: list[str] = []
    env = {"POD_NAME": "etcd-0", "EMPTY": ""}
    text = "$(POD_NAME).x $$(POD_NAME) $(EMPTY)|$(NOPE) $$ $x $("
    assert expand(text, env, missing) == "etcd-0.x $(POD_NAME) |$(NOPE) $ $x $("
    assert missing == ["NOPE"]


def test_expand_tree_reports_where_a_variable_is_missing() -> None:
    missing: list[str] = []
    tree = {"a": "$(X)", "b": ["$(Y)", 3, True], "c": {"d": "$(Z)"}}
    expanded = expand_tree(tree, {"X": "1"}, missing)
    assert expanded == {"a": "1", "b": ["$(Y)", 3, True], "c": {"d": "$(Z)"}}
    assert missing == ["b[0]: $(Y)", "c.d: $(Z)"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("100", 100),
        ("-3", -3),
        ("1h", "1h"),
        ("", ""),
        ("0x10", "0x10"),
        ("1.5", "1.5"),
    ],
)
def test_typed_value(text: str, value: object) -> None:
    result = typed_value(text)
    assert result == value and type(result) is type(value)


def test_extra_flags_become_typed_keys() -> None:
    config = {
        "name": "a",
        "snapshot-count": 5,
        "x-extra-flags": ["--snapshot-count=10000", "--enable-pprof", "--log-level=debug"],
    }
    assert apply_extra_flags(config, "t.json") == {
        "name": "a",
        "snapshot-count": 10000,
        "enable-pprof": True,
        "log-level": "debug",
    }
    assert apply_extra_flags({"name": "a"}, "t.json") == {"name": "a"}


def test_bad_extra_flags_are_all_reported() -> None:
    with pytest.raises(AgentError) as err:
        apply_extra_flags({"x-extra-flags": ["k=v", 3, "--=x", "--ok=1"]}, "t.json")
    assert str(err.value) == (
        "t.json: x-extra-flags[0]: 'k=v' is not of the form --key=value; "
        "t.json: x-extra-flags[1]: 3 is not of the form --key=value; "
        "t.json: x-extra-flags[2]: '--=x' is not of the form --key=value"
    )
    with pytest.raises(AgentError, match=r'^t.json: x-extra-flags: must be a list of "--'):
        apply_extra_flags({"x-extra-flags": "--a=b"}, "t.json")


def test_peer_urls_and_pod_names() -> None:
    assert parse_initial_cluster(f"a={url('etcd-0')}, b=http://[fd00::2]:2380") == [
        ("a", url("etcd-0")),
        ("b", "http://[fd00::2]:2380"),
    ]
    with pytest.raises(ValueError, match="entry 'b' is not name=peerURL"):
        parse_initial_cluster("a=http://x:2380,b")
    assert pod_name_of(url("etcd-2")) == "etcd-2"
    assert pod_name_of("https://10.0.0.7:2380") == "10.0.0.7"
    assert pod_name_of("https://[fd00::7]:2380") == "fd00::7"
    assert client_url_of(url("etcd-2"), "https", 2379) == f"https://etcd-2.{D}:2379"
    assert client_url_of("http://[fd00::7]:2380", "http", "2379") == "http://[fd00::7]:2379"
    assert ordinal_of("etcd-12", "etcd") == 12
    assert ordinal_of("etcd-x", "etcd") is None
    assert ordinal_of("my-etcd-1", "etcd") is None
    assert normalize_url("HTTP://Etcd-0.X:2380/") == "http://etcd-0.x:2380"


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"app/") == b"app0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\x00"
    assert prefix_range_end(b"") == b"\x00"


# -- template, data directory ----------------------------------------------------------------


def test_load_template_expands_and_types(tmp_path: Path) -> None:
    template = tmp_path / "etcd.conf.json"
    template.write_text(
        json.dumps(
            {
                "name": "$(POD_NAME)",
                "data-dir": "/var/lib/etcd/data",
                "listen-peer-urls": "http://$(POD_IP_URL_HOST):2380",
                "initial-advertise-peer-urls": f"http://$(POD_NAME).{D}:2380",
                "initial-cluster": f"etcd-0={url('etcd-0')}",
                "x-extra-flags": ["--quota-backend-bytes=8589934592"],
            }
        )
    )
    config = load_template(str(template), {"POD_NAME": "etcd-0", "POD_IP": "fd00::5"})
    assert config == {
        "name": "etcd-0",
        "data-dir": "/var/lib/etcd/data",
        "listen-peer-urls": "http://[fd00::5]:2380",
        "initial-advertise-peer-urls": url("etcd-0"),
        "initial-cluster": f"etcd-0={url('etcd-0')}",
        "quota-backend-bytes": 8589934592,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON: Expecting property name"),
        ("[]", "must be a JSON object of etcd configuration keys"),
        (
            '{"name": "$(POD_NAME)", "x": ["$(NOPE)"]}',
            "x[0]: $(NOPE) is not set in the environment",
        ),
        ('{"name": "a", "initial-advertise-peer-urls": "u"}', "data-dir: required, a non-empty"),
        (
            '{"name": "a", "data-dir": "d", "initial-advertise-peer-urls": "u",'
            ' "initial-cluster": "a"}',
            "initial-cluster: entry 'a' is not name=peerURL",
        ),
    ],
)
def test_bad_templates_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    template = tmp_path / "etcd.conf.json"
    template.write_text(content)
    with pytest.raises(AgentError) as err:
        load_template(str(template), {"POD_NAME": "etcd-0"})
    assert str(err.value).startswith(f"{template}: ")
    assert message in str(err.value)


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as err:
        load_template(str(tmp_path / "nope.json"), {})
    assert str(err.value) == (
        f"{tmp_path / 'nope.json'}: cannot read the etcd config template: No such file or directory"
    )


def test_member_data_detection(tmp_path: Path) -> None:
    """Data is a WAL (*.wal) beside its db, as etcd decides; a snapshot alone is not data.
    More cases in test_data_decisions.py."""
    data, wal = tmp_path / "data", tmp_path / "wal"
    assert member_data_state(str(data), str(wal)) == "absent"
    data.mkdir()
    (data / "lost+found").mkdir()
    assert member_data_state(str(data)) == "absent"
    (data / "member" / "snap").mkdir(parents=True)
    assert member_data_state(str(data)) == "absent"
    (data / "member" / "snap" / "db").write_text("")
    assert member_data_state(str(data)) == "damaged"
    (data / "member" / "wal").mkdir()
    (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_text("")
    assert member_data_state(str(data)) == "present"
    wal.mkdir()
    assert member_data_state(str(data), str(wal)) == "damaged"
    (wal / "0000000000000000-0000000000000000.wal").write_text("")
    assert member_data_state(str(data), str(wal)) == "present"


def test_move_data_aside_keeps_everything_beside_itself(tmp_path: Path) -> None:
    data, wal = tmp_path / "data", tmp_path / "wal-volume" / "wal"
    (data / "member" / "snap").mkdir(parents=True)
    wal.mkdir(parents=True)
    (wal / "x.wal").write_text("w")
    stamp = utc_stamp(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))
    assert stamp == "20260102T030405Z"
    moved = move_data_aside(str(data), str(wal), stamp)
    assert moved == [f"{data}.removed-{stamp}", f"{wal}.removed-{stamp}"]
    assert (tmp_path / f"data.removed-{stamp}" / "member" / "snap").is_dir()
    assert (tmp_path / "wal-volume" / f"wal.removed-{stamp}" / "x.wal").read_text() == "w"
    assert not data.exists() and not wal.exists()
    data.mkdir()
    assert move_data_aside(str(data), "", stamp) == [f"{data}.removed-{stamp}-1"]


# -- auth.json -------------------------------------------------------------------------------


def test_auth_spec() -> None:
    spec = parse_auth_spec(
        {
            "roles": [
                {"name": "ro", "permissions": [{"type": "read", "key": "/app/", "prefix": True}]}
            ],
            "users": [{"name": "ui", "passwordFile": "/p/ui", "roles": ["ro", "root"]}],
        },
        "auth.json",
    )
    assert spec == AuthSpec(
        (Role("ro", (Permission("read", "/app/", True),)),),
        (User("ui", "/p/ui", ("ro", "root")),),
    )
    assert parse_auth_spec({}, "auth.json") == AuthSpec((), ())


def test_bad_auth_spec_reports_every_problem() -> None:
    with pytest.raises(AgentError) as err:
        parse_auth_spec(
            {
                "role": [],
                "roles": [
                    {"name": "root"},
                    {"name": "ro", "permissions": [{"type": "admin", "key": 1, "prefix": "y"}]},
                    {},
                ],
                "users": [
                    {"name": "root", "passwordFile": "/p"},
                    {"name": "ui", "roles": ["nope"]},
                ],
            },
            "auth.json",
        )
    assert str(err.value).split("; ") == [
        "auth.json: role: unknown key (expected roles, users)",
        "auth.json: roles[0].name: the root role is built in and managed by the agent",
        "auth.json: roles[1].permissions[0].type: 'admin' is not one of read, write, readwrite",
        "auth.json: roles[1].permissions[0].key: required, a string",
        "auth.json: roles[1].permissions[0].prefix: must be true or false",
        "auth.json: roles[2].name: required, a non-empty string",
        "auth.json: users[0].name: root is created by the agent from the root password file",
        "auth.json: users[1].passwordFile: required, the path of the mounted password file",
        "auth.json: users[1].roles[0]: 'nope' is not a role defined in roles",
    ]


def test_read_secret_file_strips_only_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(" pass word \n")
    assert read_secret_file(str(secret)) == " pass word "
    with pytest.raises(AgentError, match="cannot read the password file"):
        read_secret_file(str(tmp_path / "nope"))


def test_backoff_grows_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=10.0)
    delays = [backoff.next() for _ in range(7)]
    bounds = [(0.8, 1.2), (1.6, 2.4), (3.2, 4.8), (6.4, 9.6), (8, 12), (8, 12), (8, 12)]
    assert all(low <= d <= high for d, (low, high) in zip(delays, bounds, strict=True)), delays
    backoff.reset()
    assert 0.8 <= backoff.next() <= 1.2


@pytest.mark.parametrize(
    "why",
    [
        "etcdserver: unhealthy cluster (HTTP 503, code 14)",
        "etcdserver: too many learner members in cluster",
        "etcdserver: can only promote a learner member which is in sync with leader",
        "etcdserver: re-configuration failed due to not enough started members",
        "another member change is in flight: etcd-3 (learner)",
    ],
)
def test_refusals_etcd_lifts_by_itself_are_polled_every_second(why: str) -> None:
    backoff = Backoff(first=1.0, cap=10.0)
    delays = [backoff.next(why) for _ in range(6)]
    assert all(0.8 <= delay <= 1.2 for delay in delays)
    assert backoff.attempt == 0
    assert 0.8 <= backoff.next("connection refused") <= 1.2
    assert backoff.attempt == 1
    assert 1.6 <= backoff.next("connection refused") <= 2.4
