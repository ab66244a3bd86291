"""The member agent's command line: bad environment and input give exit 1 and one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agent_harness import AGENT, AGENT_PYTHON


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENT_PYTHON, str(AGENT), *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["prepare"], {}, "member-agent prepare: error: environment variable POD_NAME not set"),
        (
            ["scale-down", "--replicas", "1"],
            {},
            "member-agent scale-down: error: environment variable ETCD_AGENT_STATEFULSET,"
            " POD_NAMESPACE, ETCD_AGENT_HEADLESS_SERVICE not set",
        ),
        (
            ["scale-down", "--replicas", "-1"],
            {},
            "member-agent scale-down: error: --replicas -1: must be 0 or more",
        ),
        (
            ["watch", "--once"],
            {"POD_NAME": "etcd-0", "ETCD_AGENT_CLIENT_SCHEME": "ftp"},
            "member-agent watch: error: ETCD_AGENT_CLIENT_SCHEME: 'ftp' is not http/https",
        ),
        (
            ["watch", "--once"],
            {"POD_NAME": "etcd-0", "ETCD_AGENT_CLIENT_PORT": "x"},
            "member-agent watch: error: ETCD_AGENT_CLIENT_PORT: 'x' is not a port number",
        ),
    ],
)
def test_bad_environment(args: list[str], env: dict[str, str], message: str) -> None:
    result = run(args, env)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message + "\n")


def test_bad_template_is_named(tmp_path: Path) -> None:
    template = tmp_path / "etcd.conf.json"
    template.write_text('{"name": "$(POD_NAME)", "listen-peer-urls": "http://$(POD_IP_URL_HOST)"}')
    env = {"POD_NAME": "etcd-0", "ETCD_AGENT_TEMPLATE": str(template)}
    result = run(["prepare"], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"member-agent prepare: error: {template}: listen-peer-urls: $(POD_IP_URL_HOST) is not"
        " set in the environment\n"
    )
    assert not (tmp_path / "out.json").exists()


def test_bad_auth_json_is_named(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text('{"users": [{"name": "ui", "passwordFile": "/p", "roles": ["ro"]}]}')
    env = {
        "POD_NAME": "etcd-0",
        "ETCD_AGENT_TEMPLATE": str(tmp_path / "none.json"),
        "ETCD_AGENT_AUTH_FILE": str(auth),
    }
    result = run(["watch", "--once"], env)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"member-agent watch: error: {auth}: users[0].roles[0]: 'ro' is not a role defined in"
        " roles\n",
    )


def test_scale_down_to_zero_keeps_every_member() -> None:
    env = {
        "ETCD_AGENT_STATEFULSET": "etcd",
        "POD_NAMESPACE": "ns",
        "ETCD_AGENT_HEADLESS_SERVICE": "etcd-headless",
    }
    result = run(["scale-down", "--replicas", "0"], env)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "",
        "member-agent scale-down: replicas=0 -> nothing to do: every member is kept, so the"
        " cluster resumes on its data when the pods come back\n",
    )
