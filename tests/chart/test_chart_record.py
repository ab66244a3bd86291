"""clusterRecord.enabled=false (issue 14, item 9): without the record nothing remembers that the
cluster was created, so more than one member needs an explicit initialClusterState."""

from __future__ import annotations

import pytest
from chartrender import etcd_config, render, render_error

RECORD_OFF = (
    "clusterRecord.enabled: false with 3 replicas needs initialClusterState. Without the record"
    " nothing remembers that the cluster was created, so members could bootstrap a second"
    " cluster beside it. Set initialClusterState=new for the first install and existing for"
    " every later upgrade, or keep clusterRecord.enabled=true."
)


def test_record_off_with_several_members_and_no_state_is_refused(helm: str) -> None:
    err = render_error(helm, "--set", "clusterRecord.enabled=false")
    assert f"\n  - {RECORD_OFF}\n" in err


def test_record_off_rule_holds_without_the_schema(helm: str) -> None:
    err = render_error(helm, "--skip-schema-validation", "--set", "clusterRecord.enabled=false")
    assert f"\n  - {RECORD_OFF}\n" in err


@pytest.mark.parametrize("state", ["new", "existing"])
def test_record_off_with_a_given_state_renders_it(helm: str, state: str) -> None:
    objects = render(helm, "--set", f"clusterRecord.enabled=false,initialClusterState={state}")
    assert etcd_config(objects)["initial-cluster-state"] == state


def test_record_off_with_one_member_needs_no_state(helm: str) -> None:
    objects = render(helm, "--set", "clusterRecord.enabled=false,replicas=1")
    assert etcd_config(objects)["initial-cluster-state"] == "new"


def test_record_on_needs_no_state(helm: str) -> None:
    assert etcd_config(render(helm))["initial-cluster-state"] == "new"
