"""The member agent against real etcd 3.5 processes, each pod on its own loopback address and name.

The harness (conftest.py) runs the agent and etcd as a pod would: `prepare` writes the config,
etcd starts from it with `--config-file`, `watch --once` promotes and records, `scale-down`
removes. The Kubernetes API is the real API server of the shared control plane, a namespace per
release, the agent holding the chart's RBAC.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import AGENT, RECORD, TOKEN, Pod, Release

pytestmark = pytest.mark.e2e

ID = r"[0-9a-f]+"


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return lines(result)


def initial_cluster_of(line: str) -> set[str]:
    match = re.search(r"initial-cluster (\S+) state", line)
    assert match, line
    return set(match.group(1).split(","))


def config_of(pod: Pod) -> dict[str, object]:
    return dict(json.loads(pod.output.read_text()))


def voters(release: Release, via: Pod) -> list[str]:
    members = release.members(via)
    assert all(not m.get("isLearner") for m in members), members
    return sorted(m.get("name", "") for m in members)


def bootstrap(release: Release, replicas: int) -> Path:
    """All bootstrap pods run `prepare` at once, then etcd."""
    template = release.template(replicas)
    logs = release.bootstrap(template, replicas)
    for log, pod in zip(logs, release.pods, strict=False):
        assert log == (
            "member-agent prepare: data=absent cluster=unreachable record=absent -> "
            f"bootstrapping a new cluster: initial-cluster {release.initial_cluster(replicas)}"
            f" state new; wrote {pod.output}\n"
        )
    return template


# The stale member's removal and the new learner's addition may land in different attempts
# (etcd refuses a change right after another one: "unhealthy cluster"); the last line says which.
READDED = (
    r"member-agent prepare: data=absent cluster=reachable\(\d members, leader \w+\)"
    r" listed=(yes|no) -> (removed the stale member \w+ \(its data is gone\), )?added as learner"
    r" \w+, joining with initial-cluster \S+ state existing; wrote \S+"
)


def assert_stale_member_removed(out: list[str], old_id: str) -> None:
    stale = format(int(old_id), "x")
    removals = [line for line in out if f"removed the stale member {stale} " in line]
    assert len(removals) == 1 and " listed=yes -> " in removals[0], out


def join_as_learner(release: Release, pod: Pod, template: Path, expect: str) -> list[str]:
    """`prepare` for a pod that joins, then etcd, then `watch --once` promotes it."""
    out = ok(release.agent(pod, "prepare", "--timeout", "60", template=template))
    assert re.fullmatch(expect, out[-1]), out
    for line in out[:-1]:  # etcd refuses changes for 5 s after a member (re)connects
        assert " -> waiting " in line and "could not finish" in line, out
    release.start_etcd(pod)
    release.wait_started(pod, release.pods[0])
    promoted = ok(release.agent(pod, "watch", "--once", "--timeout", "60"))
    assert any(re.search(r"member=learner \w+ -> promoted to voter$", x) for x in promoted), (
        promoted
    )
    return out


def test_bootstrap_join_promote_scale_down_and_every_rejoin_case(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory()
    p0, p1, _p2, p3 = release.pods[:4]
    template3 = bootstrap(release, 3)
    config = config_of(p0)
    assert config["initial-cluster-state"] == "new"
    assert config["name"] == "etcd-0"
    assert config["listen-client-urls"] == f"http://{p0.ip}:2379"
    assert config["data-dir"] == f"{p0.volume}/data"
    assert config["heartbeat-interval"] == 50 and config["strict-reconfig-check"] is True
    assert "x-extra-flags" not in config
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2"]
    release.put(p0, "ledger/1", "before")

    # The cluster record: written once the cluster has a leader, by a started voter.
    out = ok(release.agent(p0, "watch", "--once", template=template3))
    cluster_id = release.cluster_id(p0)
    assert re.fullmatch(
        rf"member-agent watch: cluster=reachable\(3 members, leader {ID}\) member=voter {ID} ->"
        " nothing to promote",
        out[0],
    )
    assert out[1].endswith(
        f"-> created the cluster record {release.namespace}/{RECORD} (cluster {cluster_id})"
    )
    record = release.get_object("v1", "configmaps", RECORD)
    assert record is not None
    assert record["data"]["clusterID"] == cluster_id
    assert record["data"]["token"] == TOKEN
    assert record["data"]["members"] == release.initial_cluster(3)

    # Scale up: a fourth pod joins as a learner and is promoted.
    template4 = release.template(4)
    learner = (
        r"member-agent prepare: data=absent cluster=reachable\(3 members, leader \w+\) listed=no"
        r" -> added as learner \w+, joining with initial-cluster \S+ state existing; wrote \S+"
    )
    out = join_as_learner(release, p3, template4, learner)
    assert initial_cluster_of(out[-1]) == set(release.initial_cluster(4).split(","))
    assert config_of(p3)["initial-cluster-state"] == "existing"
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2", "etcd-3"]
    record = release.get_object("v1", "configmaps", RECORD)
    assert record is not None and record["data"]["members"] == release.initial_cluster(4)
    assert record["data"]["clusterID"] == cluster_id

    # Scale down to 3: etcd-3 is removed (and stops by itself); a second run has nothing to do.
    out = ok(release.agent(p0, "scale-down", "--replicas", "3"))
    assert re.search(rf"-> removed member etcd-3 \({ID}\)$", out[-2]), out
    assert out[-1].endswith("-> nothing to remove (members: etcd-0, etcd-1, etcd-2)")
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2"]
    assert p3.etcd is not None and p3.etcd.wait(timeout=30) is not None
    out = ok(release.agent(p0, "scale-down", "--replicas", "3"))
    assert len(out) == 1 and out[0].endswith("nothing to remove (members: etcd-0, etcd-1, etcd-2)")

    # Case 2: etcd-3 comes back with the data of the removed member: moved aside, joins fresh.
    assert (p3.data_dir / "member" / "snap").is_dir()
    release.stop_etcd(p3)
    # Right after the removal etcd may refuse the addition ("unhealthy cluster"): the data is then
    # moved in the first attempt and the learner added in a later one, with the data absent.
    moved = rf"moved data to {re.escape(str(p3.data_dir))}\.removed-\d{{8}}T\d{{6}}Z"
    moved_aside = (
        r"member-agent prepare: data=(present|absent) cluster=reachable\(3 members, leader \w+\)"
        rf" listed=no -> ({moved}, )?added as learner \w+, joining with initial-cluster \S+"
        r" state existing; wrote \S+"
    )
    out = join_as_learner(release, p3, template4, moved_aside)
    assert [bool(re.search(moved, line)) for line in out].count(True) == 1, out
    assert re.search(moved, out[-1]) or " data=absent " in out[-1], out
    kept = list(p3.volume.glob("data.removed-*"))
    assert len(kept) == 1 and (kept[0] / "member" / "snap").is_dir()
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2", "etcd-3"]

    # Case 3: etcd-3 loses its volume: the stale member is removed and it is added again.
    release.stop_etcd(p3)
    release.lose_volume(p3)
    old_id = next(m["ID"] for m in release.members(p0) if m.get("name") == "etcd-3")
    out = join_as_learner(release, p3, template4, READDED)
    assert_stale_member_removed(out, old_id)
    assert initial_cluster_of(out[-1]) == set(release.initial_cluster(4).split(","))
    assert voters(release, p0) == ["etcd-0", "etcd-1", "etcd-2", "etcd-3"]
    assert release.get(p3, "ledger/1") == "before"

    # Case 1: a member restarts on its data: started as it is.
    release.stop_etcd(p1, signal.SIGTERM)
    out = ok(release.agent(p1, "prepare", "--timeout", "60", template=template3))
    assert re.fullmatch(
        r"member-agent prepare: data=present cluster=reachable\(4 members, leader \w+\)"
        rf" listed=yes -> starting on the existing data; wrote {re.escape(str(p1.output))}",
        out[-1],
    ), out
    release.start_etcd(p1)
    release.wait_healthy(p1)
    release.put(p1, "ledger/2", "after")
    assert [release.get(pod, "ledger/2") for pod in release.pods[:4]] == ["after"] * 4
    assert release.cluster_id(p3) == cluster_id


def test_lost_volume_of_pod_0_during_a_full_outage_never_starts_a_second_cluster(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory()
    p0, p1, p2 = release.pods[:3]
    template = bootstrap(release, 3)
    ok(release.agent(p0, "watch", "--once", template=template))
    cluster_id = release.cluster_id(p0)
    old_id = next(m["ID"] for m in release.members(p0) if m.get("name") == "etcd-0")
    release.put(p1, "ledger/1", "acknowledged")
    for pod in (p0, p1, p2):
        release.stop_etcd(pod)
        release.new_pod(pod)
    release.lose_volume(p0)

    # Pod 0 starts first, alone, with no data: the record forbids a new cluster, so it waits.
    waiting, log = release.spawn_agent(p0, "prepare", "--timeout", "90", template=template)
    release.wait_for("pod 0 to wait", lambda: " -> waiting " in log.read_text())
    assert waiting.poll() is None and not p0.output.exists()
    for pod in (p1, p2):
        out = ok(release.agent(pod, "prepare", "--timeout", "60", template=template))
        assert out[-1].endswith(
            "cluster=unreachable -> starting on the existing data; wrote " + str(pod.output)
        )
        release.start_etcd(pod)
    assert waiting.wait(timeout=90) == 0, log.read_text()
    out = log.read_text().splitlines()
    record = re.escape(f"{release.namespace}/{RECORD}")
    assert re.fullmatch(
        r"member-agent prepare: data=absent cluster=unreachable record=present -> waiting"
        rf" [0-9.]+s: the cluster record {record} exists: this cluster was created"
        r" before and a second, empty one is never bootstrapped under its name; waiting for its"
        rf" members \(delete ConfigMap {record} only to start over on purpose\)"
        r" \(asked: etcd-1: .+; etcd-2: .+\)",
        out[0],
    ), out
    assert re.fullmatch(READDED, out[-1]), out
    assert_stale_member_removed(out, old_id)
    release.start_etcd(p0)
    release.wait_started(p0, p1)
    ok(release.agent(p0, "watch", "--once", "--timeout", "60", template=template))
    assert voters(release, p1) == ["etcd-0", "etcd-1", "etcd-2"]
    assert release.cluster_id(p0) == cluster_id
    assert release.get(p0, "ledger/1") == "acknowledged"


@pytest.mark.parametrize(
    ("case", "why"),
    [
        (
            "record present",
            "the cluster record {record} exists: this cluster was created before",
        ),
        (
            "API unreachable",
            "cannot tell whether the cluster was created (cluster record {record} unreadable)",
        ),
        ("state existing", "the template's initial-cluster-state is existing"),
        ("not a bootstrap member", "etcd-3 is not a bootstrap member"),
    ],
)
def test_a_pod_without_data_that_cannot_reach_the_cluster_refuses_to_bootstrap(
    release_factory: Callable[..., Release], case: str, why: str
) -> None:
    """`why` names the record as `{record}`: its namespace is the release's."""
    release = release_factory(pods=4)
    why = why.format(record=f"{release.namespace}/{RECORD}")
    pod, template, extra = release.pods[0], release.template(3), {}
    if case == "record present":
        release.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": RECORD},
                "data": {"clusterID": "1234", "token": TOKEN},
            }
        )
    elif case == "API unreachable":
        extra = {"KUBERNETES_SERVICE_PORT": "1"}
    elif case == "state existing":
        template = release.template(3, state="existing")
    else:
        pod = release.pods[3]
    result = release.agent(pod, "prepare", "--timeout", "2", template=template, **extra)
    assert result.returncode == 2, result.stderr
    out = lines(result)
    assert len(out) >= 2
    assert all(
        line.startswith("member-agent prepare: data=absent cluster=unreachable") for line in out
    )
    assert all(why in line for line in out), out
    assert " -> giving up (--timeout): " in out[-1]
    assert not pod.output.exists()


def test_scale_down_with_no_cluster(release_factory: Callable[..., Release]) -> None:
    release = release_factory(pods=3)
    pod = release.pods[0]
    result = release.agent(pod, "scale-down", "--replicas", "1")
    assert result.returncode == 0, result.stderr
    assert lines(result) == [
        "member-agent scale-down: replicas=1 record=absent -> nothing to do (no cluster has been"
        " created yet)"
    ]
    release.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": RECORD},
            "data": {"clusterID": "1234", "token": TOKEN},
        }
    )
    release.put_statefulset(3)
    result = release.agent(pod, "scale-down", "--replicas", "1")
    assert result.returncode == 1
    (line,) = lines(result)
    assert line.startswith(
        "member-agent scale-down: replicas=1 cluster=unreachable record=present statefulset=3 ->"
        " refusing: a scale-down from 3 to 1 needs a healthy cluster to remove members from, and"
        " no member answers (asked: etcd-0: "
    ), line


def test_auth_json_is_applied_and_enforced_and_the_agent_keeps_working_with_auth(
    release_factory: Callable[..., Release], etcdctl_bin: str
) -> None:
    release = release_factory(pods=2)
    p0, p1 = release.pods
    secrets = release.root / "secrets"
    secrets.mkdir()
    release.root_password_file.write_text("r00t-secret\n")
    for user, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
        (secrets / user).write_text(password)
    release.auth_file.write_text(
        json.dumps(
            {
                "roles": [
                    {
                        "name": "reader",
                        "permissions": [{"type": "read", "key": "app/", "prefix": True}],
                    },
                    {
                        "name": "writer",
                        "permissions": [{"type": "readwrite", "key": "app/", "prefix": True}],
                    },
                ],
                "users": [
                    {"name": "alice", "passwordFile": str(secrets / "alice"), "roles": ["reader"]},
                    {"name": "bob", "passwordFile": str(secrets / "bob"), "roles": ["writer"]},
                ],
            }
        )
    )
    template1 = bootstrap(release, 1)
    out = ok(release.agent(p0, "watch", "--once", template=template1))
    assert out[-1].endswith("member=voter -> auth now enabled; root, 2 roles, 2 users applied")
    assert not any("secret" in line or "-pw" in line for line in out)

    def etcdctl(*args: str, user: str = "") -> subprocess.CompletedProcess[str]:
        command = [etcdctl_bin, f"--endpoints={p0.url}", "--command-timeout=5s"]
        if user:
            command.append(f"--user={user}")
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)

    assert etcdctl("put", "app/x", "1", user="root:r00t-secret").returncode == 0
    read = etcdctl("get", "app/x", user="alice:alice-pw")
    assert (read.returncode, read.stdout) == (0, "app/x\n1\n")
    denied = etcdctl("put", "app/y", "2", user="alice:alice-pw")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    assert etcdctl("put", "app/y", "2", user="bob:bob-pw").returncode == 0
    outside = etcdctl("put", "other/z", "3", user="bob:bob-pw")
    assert outside.returncode != 0 and "permission denied" in outside.stderr
    anonymous = etcdctl("get", "app/x")
    assert anonymous.returncode != 0 and "user name is empty" in anonymous.stderr

    # Idempotent: a second run authenticates as root and changes nothing.
    out = ok(release.agent(p0, "watch", "--once", template=template1))
    assert out[-1].endswith(
        "member=voter -> auth was already enabled; root, 2 roles, 2 users applied"
    )

    # Member changes need root once auth is on: join (add, promote) and scale-down (remove).
    template2 = release.template(2)
    learner = (
        r"member-agent prepare: data=absent cluster=reachable\(1 members, leader \w+\) listed=no"
        r" -> added as learner \w+, joining with initial-cluster \S+ state existing; wrote \S+"
    )
    join_as_learner(release, p1, template2, learner)
    assert voters(release, p0) == ["etcd-0", "etcd-1"]
    out = ok(release.agent(p0, "scale-down", "--replicas", "1"))
    assert re.search(rf"-> removed member etcd-1 \({ID}\)$", out[-2]), out
    assert voters(release, p0) == ["etcd-0"]


def test_watch_exits_0_on_sigterm(release_factory: Callable[..., Release]) -> None:
    release = release_factory(pods=1)
    pod = release.pods[0]
    process, log = release.spawn_agent(pod, "watch", template=release.template(1))
    release.wait_for("a first log line", lambda: log.read_text() != "")
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert log.read_text().splitlines()[-1] == "member-agent watch: terminated by SIGTERM"


def test_a_running_agent_applies_changed_users_roles_and_passwords_and_runs_changed_code(
    release_factory: Callable[..., Release], etcdctl_bin: str
) -> None:
    """Issue 13, trap 5: the members are not restarted when users, roles, passwords or the agent
    change (none of them is in the pod template), so the running `watch` picks the change up:
    it reads auth.json and the password files every pass and applies them when they differ from
    what it applied last; a changed program file re-executes the agent in place (the same
    process, etcd untouched)."""
    release = release_factory(pods=1)
    pod = release.pods[0]
    secrets = release.root / "secrets"
    secrets.mkdir()
    release.root_password_file.write_text("r00t-secret\n")
    (secrets / "alice").write_text("alice-pw")

    def write_auth(*users: str) -> None:
        reader = {
            "name": "reader",
            "permissions": [{"type": "read", "key": "app/", "prefix": True}],
        }
        entries = [
            {"name": user, "passwordFile": str(secrets / user), "roles": ["reader"]}
            for user in users
        ]
        release.auth_file.write_text(json.dumps({"roles": [reader], "users": entries}))

    def etcdctl(user: str) -> subprocess.CompletedProcess[str]:
        command = [etcdctl_bin, f"--endpoints={pod.url}", "--command-timeout=5s", "get", "app/x"]
        return subprocess.run([*command, f"--user={user}"], capture_output=True, text=True)

    def applied(log: Path) -> list[str]:
        return [line for line in log.read_text().splitlines() if line.endswith("applied")
                or line.endswith("applied (auth.json or a password changed)")]  # fmt: skip

    write_auth("alice")
    template = bootstrap(release, 1)
    program = release.root / "etcd-agent"
    shutil.copytree(AGENT, program)
    watcher, log = release.spawn_agent(
        pod, "watch", "--interval", "0.5", template=template, program=program
    )
    release.wait_for("auth to be applied", lambda: len(applied(log)) == 1)
    assert applied(log)[0].endswith("-> auth now enabled; root, 1 roles, 1 users applied")
    assert etcdctl("alice:alice-pw").returncode == 0

    # A new user (an upgrade mounts its password) and a changed password for alice.
    (secrets / "carol").write_text("carol-pw")
    (secrets / "alice").write_text("alice-new")
    write_auth("alice", "carol")
    release.wait_for("the change to be applied", lambda: len(applied(log)) == 2)
    assert applied(log)[1].endswith(
        "-> auth was already enabled; root, 1 roles, 2 users applied"
        " (auth.json or a password changed)"
    )
    assert etcdctl("carol:carol-pw").returncode == 0
    assert etcdctl("alice:alice-new").returncode == 0
    old = etcdctl("alice:alice-pw")
    assert old.returncode != 0 and "authentication failed" in old.stderr, old.stderr
    time.sleep(2)  # four more passes: nothing changed, nothing applied again
    assert len(applied(log)) == 2

    # An upgrade changed the agent's code (its ConfigMap): the agent runs the new code in place.
    assert pod.etcd is not None
    with (program / "auth_apply.py").open("a") as handle:
        handle.write("\n# the next version of the agent\n")
    release.wait_for("the agent to restart itself", lambda: "code changed" in log.read_text())
    release.wait_for("the new code's first pass", lambda: len(applied(log)) == 3)
    lines = log.read_text().splitlines()
    restarted = next(i for i, line in enumerate(lines) if "code changed" in line)
    assert lines[restarted] == (
        "member-agent watch: the agent's code changed (agent ConfigMap updated) -> restarting"
        " the agent"
    )
    assert applied(log)[2].endswith("-> auth was already enabled; root, 1 roles, 2 users applied")
    assert watcher.poll() is None, "the agent process should have replaced itself, not exited"
    assert pod.etcd.poll() is None, "etcd must keep running"


def test_tls_with_client_certificates_bootstrap_join_and_scale_down(
    release_factory: Callable[..., Release],
) -> None:
    release = release_factory(pods=2, tls=True)
    p0, p1 = release.pods
    template1 = bootstrap(release, 1)
    out = ok(release.agent(p0, "watch", "--once", template=template1))
    assert out[-1].endswith(
        f"-> created the cluster record {release.namespace}/{RECORD}"
        f" (cluster {release.cluster_id(p0)})"
    )

    # Without its client certificate the agent gets nowhere: etcd requires one.
    template2 = release.template(2)
    bare = release.agent(
        p1, "prepare", "--timeout", "2", template=template2, ETCD_AGENT_CERT="", ETCD_AGENT_KEY=""
    )
    assert bare.returncode == 2, bare.stderr
    assert "data=absent cluster=unreachable record=present -> waiting" in bare.stderr
    assert not p1.output.exists()

    learner = (
        r"member-agent prepare: data=absent cluster=reachable\(1 members, leader \w+\) listed=no"
        r" -> added as learner \w+, joining with initial-cluster \S+ state existing; wrote \S+"
    )
    out = join_as_learner(release, p1, template2, learner)
    assert "etcd-1=https://etcd-1." in out[-1]
    assert voters(release, p0) == ["etcd-0", "etcd-1"]
    out = ok(release.agent(p0, "scale-down", "--replicas", "1"))
    assert re.search(rf"-> removed member etcd-1 \({ID}\)$", out[-2]), out
    assert voters(release, p0) == ["etcd-0"]
