"""The scale-down hook's Role and time budget (issue 14, items 4 and 5)."""

from __future__ import annotations

import pytest
from chartrender import render, render_error

HELM_HOOK_WAIT = 300  # `helm upgrade --timeout` default: 5m0s


def job_of(objects: dict) -> dict:
    return objects[("Job", "etcd-scale-down")]["spec"]


def per_try_timeout(job: dict) -> float:
    command = job["template"]["spec"]["containers"][0]["command"]
    return float(command[command.index("--timeout") + 1])


def test_the_hook_may_read_its_own_statefulset_and_nothing_else(helm: str) -> None:
    rules = render(helm, "--set", "fullnameOverride=db")[("Role", "db-scale-down")]["rules"]
    assert rules == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["db-cluster-record"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets"],
            "resourceNames": ["db"],
            "verbs": ["get"],
        },
    ]


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "scaleDown.backoffLimit=0"],
        ["--set", "scaleDown.backoffLimit=2"],
        ["--set", "scaleDown.timeoutSeconds=90,scaleDown.backoffLimit=2"],
    ],
    ids=["default", "no-retry", "two-retries", "shortest"],
)
def test_the_whole_hook_budget_stays_inside_helms_hook_wait(helm: str, values: list[str]) -> None:
    job = job_of(render(helm, *values))
    tries = job["backoffLimit"] + 1
    per_try = per_try_timeout(job)
    assert per_try >= 15
    # Every try gives up by itself (and says why) before the Job's deadline kills it.
    assert tries * per_try < job["activeDeadlineSeconds"] < HELM_HOOK_WAIT


def test_the_budget_derives_from_one_value(helm: str) -> None:
    job = job_of(render(helm, "--set", "scaleDown.timeoutSeconds=200,scaleDown.backoffLimit=1"))
    assert job["activeDeadlineSeconds"] == 200
    assert job["backoffLimit"] == 1
    assert per_try_timeout(job) == 85  # 200 / 2 tries, less 15 s for each pod to start


def test_the_default_budget(helm: str) -> None:
    job = job_of(render(helm))
    assert (job["activeDeadlineSeconds"], job["backoffLimit"], per_try_timeout(job)) == (
        240,
        1,
        105,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("scaleDown.timeoutSeconds=60", "timeoutSeconds"),
        ("scaleDown.backoffLimit=3", "backoffLimit"),
        ("scaleDown.activeDeadlineSeconds=600", "activeDeadlineSeconds"),
    ],
)
def test_a_budget_out_of_range_is_refused(helm: str, value: str, message: str) -> None:
    error = render_error(helm, "--set", value)
    assert "scaleDown" in error and message in error, error


def watch_command(objects: dict) -> list[str]:
    pod = objects[("StatefulSet", "etcd")]["spec"]["template"]["spec"]
    agent = next(c for c in pod["containers"] if c["name"] == "member-agent")
    return list(agent["command"])


@pytest.mark.parametrize(
    ("values", "rejoin_after"),
    [([], 300), (["--set", "scaleDown.timeoutSeconds=120"], 180)],
)
def test_a_removed_members_pod_waits_out_any_hook_run_before_deleting_itself(
    helm: str, values: list[str], rejoin_after: int
) -> None:
    objects = render(helm, *values)
    command = watch_command(objects)
    assert command[-2:] == ["--rejoin-after", str(rejoin_after)]
    assert rejoin_after > job_of(objects)["activeDeadlineSeconds"]


def test_without_the_hook_a_removed_members_pod_deletes_itself_after_a_minute(helm: str) -> None:
    assert watch_command(render(helm, "--set", "scaleDown.enabled=false"))[-2:] == [
        "--rejoin-after",
        "60",
    ]


def test_without_the_kubernetes_api_the_pod_never_deletes_itself(helm: str) -> None:
    command = watch_command(
        render(helm, "--set", "clusterRecord.enabled=false,initialClusterState=new")
    )
    assert "--rejoin-after" not in command


def test_the_members_may_delete_only_their_own_pods(helm: str) -> None:
    rules = render(helm, "--set", "replicas=5")[("Role", "etcd")]["rules"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]} | {
        "resourceNames": [f"etcd-{i}" for i in range(5)]
    } in rules
    assert all(rule["verbs"] != ["delete"] or rule["resources"] == ["pods"] for rule in rules)
