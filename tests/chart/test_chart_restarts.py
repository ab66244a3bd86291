"""What rolls the members: only a change to what etcd runs (issue 13, trap 5).

The pod template changes, and so every member restarts, for a new etcd image, configuration,
flags, resources, mounts and the like. It must not change for a new chart version, new member
agent code or changed etcd users and roles: those reach the running pods through their
ConfigMaps, and the agent applies them (tests/agent/test_against_etcd.py shows it picks them up).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chartrender import CHART, parse, render

AUTH = "auth.rbac.enabled=true,auth.rbac.rootPassword.existingSecret=root-pw,auth.token.type=simple"
USERS = [{"name": "app", "roles": ["app"], "password": {"existingSecret": "app-pw"}}]


def roles(*permissions: str) -> list[dict[str, Any]]:
    granted = [{"type": kind, "key": "app/", "prefix": True} for kind in permissions]
    return [{"name": "app", "permissions": granted}]


def auth(*permissions: str) -> list[str]:
    return [
        "--set",
        AUTH,
        "--set-json",
        f"auth.rbac.users={json.dumps(USERS)}",
        "--set-json",
        f"auth.rbac.roles={json.dumps(roles(*permissions))}",
    ]


def rendered(helm: str, chart: Path, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = subprocess.run(
        [helm, "template", "etcd", str(chart), "--namespace", "etcd", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def pod_template(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return dict(objects[("StatefulSet", "etcd")]["spec"]["template"])


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    chart = tmp_path / "etcd"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("__pycache__"))
    return chart


def test_a_new_chart_version_agent_code_or_role_change_keeps_the_pod_template(
    helm: str, chart_copy: Path
) -> None:
    before = rendered(helm, chart_copy, *auth("read"))

    # The next chart release: a new version (same etcd), new agent code, a role granted more.
    chart_yaml = chart_copy / "Chart.yaml"
    text = chart_yaml.read_text()
    assert "\nversion: 0.1.0\n" in text
    chart_yaml.write_text(text.replace("\nversion: 0.1.0\n", "\nversion: 0.2.0\n"))
    with (chart_copy / "files" / "etcd-agent" / "watch.py").open("a") as agent:
        agent.write("\n# the next version of the agent\n")
    after = rendered(helm, chart_copy, *auth("readwrite"))

    assert pod_template(after) == pod_template(before)
    # ... while the changes themselves reach the pods through their ConfigMaps:
    config, code = ("ConfigMap", "etcd-config"), ("ConfigMap", "etcd-agent")
    assert json.loads(after[config]["data"]["auth.json"])["roles"] == roles("readwrite")
    assert after[code]["data"]["watch.py"].endswith("# the next version of the agent\n")
    assert after[("StatefulSet", "etcd")]["metadata"]["labels"]["helm.sh/chart"] == "etcd-0.2.0"
    labels = pod_template(after)["metadata"]["labels"]
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels


@pytest.mark.parametrize(
    "change",
    [
        ["--set", "config.logLevel=debug"],
        ["--set", "image.tag=v3.6.16"],
        ["--set", "resources.limits.memory=8Gi"],
        ["--set", "extraFlags[0]=--max-txn-ops=256"],
        ["--set-json", 'auth.rbac.users=[{"name":"other","password":{"existingSecret":"o"}}]'],
    ],
    ids=["config", "image", "resources", "flags", "a user's password Secret mounted"],
)
def test_what_etcd_runs_changes_the_pod_template(
    helm: str, chart_copy: Path, change: list[str]
) -> None:
    before = pod_template(rendered(helm, chart_copy, *auth("read")))
    assert pod_template(rendered(helm, chart_copy, *auth("read"), *change)) != before


def test_config_checksum_ignores_the_bootstrap_plan(helm: str) -> None:
    def checksum(*args: str) -> str:
        template = render(helm, *args)[("StatefulSet", "etcd")]["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    base = checksum()
    assert checksum("--set", "replicas=5") == base
    assert checksum("--set", "initialClusterState=existing") == base
    assert checksum("--set", "config.logLevel=debug") != base
