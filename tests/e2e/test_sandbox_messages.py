"""What a new user meets in the sandbox, with real etcd: a release whose Secrets are missing, an
upgrade that is done only when every member votes, and the messages about pods and containers."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.client import Sandbox
from etcd_chart.sandbox.command import existing_objects

CLI = Callable[..., subprocess.CompletedProcess[str]]
NoStrays = Callable[[Path, "str | None"], None]

pytestmark = pytest.mark.e2e

SECRETS_MESSAGE = """\
3 Secrets the pods need do not exist, and nothing in the sandbox would create them:
  Secret default/etcd-jwt (keys: jwt.key, jwt.pub), used by StatefulSet/etcd
  Secret default/etcd-root-password (keys: password), used by StatefulSet/etcd
  Secret default/etcd-webui-password (keys: password), used by StatefulSet/etcd
Write them into one file as `kubectl create` makes them (no cluster needed), and pass it with \
--objects FILE:
  kubectl create secret generic etcd-jwt -n default --from-file=jwt.key=PATH \
--from-file=jwt.pub=PATH --dry-run=client -o yaml > objects.yaml
  echo --- >> objects.yaml
  kubectl create secret generic etcd-root-password -n default --from-literal=password=VALUE \
--dry-run=client -o yaml >> objects.yaml
  echo --- >> objects.yaml
  kubectl create secret generic etcd-webui-password -n default --from-literal=password=VALUE \
--dry-run=client -o yaml >> objects.yaml
"""


def test_secure_values_without_their_secrets_fail_at_once_naming_every_one(
    tmp_path: Path, chart_dir: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    started = time.monotonic()
    result = sandbox_cli(
        "up",
        str(chart_dir),
        "-f",
        str(chart_dir / "ci" / "secure-values.yaml"),
        "--state-dir",
        str(state),
    )
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"etcd-chart sandbox: up failed; stopped everything and removed {state}:\n"
        + SECRETS_MESSAGE
    )
    assert elapsed < 30, f"took {elapsed:.1f} s: the sandbox waited instead of failing at once"
    assert not state.exists(), sorted(p.name for p in state.iterdir())
    no_strays(state, None)


def test_a_failed_up_in_a_kept_state_dir_keeps_its_volumes_and_adds_nothing(
    tmp_path: Path, chart_dir: Path, sandbox_cli: CLI, no_strays: NoStrays
) -> None:
    state = tmp_path / "state"
    first = sandbox_cli("up", str(chart_dir), "--set", "replicas=1", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    down = sandbox_cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    kept = sorted(str(p.relative_to(state)) for p in state.rglob("*"))
    volumes = sorted(p for p in kept if p.startswith("volumes/") and p.endswith("/member"))
    assert len(volumes) == 1, kept
    failed = sandbox_cli(
        "up", str(chart_dir), "-f", str(chart_dir / "ci" / "secure-values.yaml"),
        "--state-dir", str(state),
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert "3 Secrets the pods need do not exist" in failed.stderr
    left = {str(p.relative_to(state)) for p in state.rglob("*")}
    assert set(volumes) <= left
    assert (state / "control-plane" / "etcd").is_dir()
    assert not {name.split("/")[0] for name in left} - {name.split("/")[0] for name in kept}
    no_strays(state, None)
    purged = sandbox_cli("down", "--purge", "--state-dir", str(state))
    assert purged.returncode == 0, purged.stderr
    assert not state.exists()


def test_the_printed_kubectl_lines_make_a_file_objects_accepts(tmp_path: Path) -> None:
    """Follow the message: real kubectl, real key files, no cluster."""
    kubectl = find_tool("kubectl")
    (tmp_path / "jwt.key").write_text("private\n")
    (tmp_path / "jwt.pub").write_text("public\n")
    for line in SECRETS_MESSAGE.splitlines():
        if not line.startswith("  kubectl "):
            if line.startswith("  echo "):
                subprocess.run(line.strip(), shell=True, cwd=tmp_path, check=True)  # noqa: S602
            continue
        text = line.strip().replace("PATH", "", 2).replace("=VALUE", "=s3cret")
        text = text.replace("jwt.key=", "jwt.key=jwt.key").replace("jwt.pub=", "jwt.pub=jwt.pub")
        text = text.replace("kubectl ", f"{shlex.quote(kubectl)} ", 1)
        subprocess.run(text, shell=True, cwd=tmp_path, check=True)  # noqa: S602
    objects = existing_objects([str(tmp_path / "objects.yaml")])
    assert [(o["kind"], o["metadata"]["name"], sorted(o["data"])) for o in objects] == [
        ("Secret", "etcd-jwt", ["jwt.key", "jwt.pub"]),
        ("Secret", "etcd-root-password", ["password"]),
        ("Secret", "etcd-webui-password", ["password"]),
    ]


def _member_list(sb: Sandbox, pod: str) -> list[dict[str, object]]:
    result = sb.etcdctl(pod, "member", "list", "-w", "json")
    assert result.returncode == 0, result.stderr
    members: list[dict[str, object]] = json.loads(result.stdout)["members"]
    return members


def test_upgrade_to_five_is_done_only_when_every_member_votes(
    sandbox: Callable[..., Sandbox], chart_dir: Path
) -> None:
    sb = sandbox(str(chart_dir))
    result = sb.upgrade(str(chart_dir), "--set", "replicas=5")
    assert result.returncode == 0, result.stderr
    listed = _member_list(sb, "etcd-0")
    assert sorted(str(m["name"]) for m in listed) == [f"etcd-{i}" for i in range(5)]
    assert [m["name"] for m in listed if m.get("isLearner")] == []
    put = sb.etcdctl("etcd-4", "put", "/new/member", "votes")
    assert (put.returncode, put.stdout, put.stderr) == (0, "OK\n", "")


def _no_promotion_manifest(helm: str, chart_dir: Path, replicas: int, path: Path) -> str:
    """The chart with a member-agent sidecar that never promotes, so a new member stays a
    learner, and a readiness probe that a learner passes (a TCP connect to the metrics port).

    The chart's own probe, /readyz, fails for a learner on etcd 3.7 and on 3.5.30 (its
    `non_learner` check; 3.5.16 passed it), so pod readiness never shows a learner as done
    there; with a probe that does, the sandbox must still wait for the member list."""
    rendered = subprocess.run(
        [helm, "template", "etcd", str(chart_dir), "--set", f"replicas={replicas}"]
        + ["--set", "allowEvenReplicas=true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    watch = "            - /opt/etcd-agent\n            - watch\n"
    assert rendered.count(watch) == 1
    probe = (
        "          readinessProbe:\n            httpGet:\n              path: /readyz\n"
        "              port: metrics\n              scheme: HTTP\n"
    )
    assert rendered.count(probe) == 1
    path.write_text(
        rendered.replace(
            watch, "            - -c\n            - import time; time.sleep(1e6)\n"
        ).replace(
            probe,
            "          readinessProbe:\n            tcpSocket:\n              port: metrics\n",
        )
    )
    return str(path)


def test_upgrade_is_not_done_while_a_member_is_a_learner(
    sandbox: Callable[..., Sandbox], chart_dir: Path, helm4: str, tmp_path: Path
) -> None:
    three = _no_promotion_manifest(helm4, chart_dir, 3, tmp_path / "three.yaml")
    four = _no_promotion_manifest(helm4, chart_dir, 4, tmp_path / "four.yaml")
    sb = sandbox("--manifest", three)
    result = sb.upgrade("--manifest", four, check=False, timeout=30)
    assert result.returncode == 2, result.stdout
    hooks, failed = result.stderr.split("\n", 1)
    assert hooks == (
        f"etcd-chart sandbox: {four}: left out 6 Helm hook object(s) "
        "(NetworkPolicy/etcd-scale-down, ServiceAccount/etcd-scale-down, "
        "ConfigMap/etcd-scale-down, Role/etcd-scale-down, "
        "RoleBinding/etcd-scale-down, Job/etcd-scale-down): only Helm runs hooks; give the chart "
        "directory to have them run"
    )
    assert failed.startswith(
        "etcd-chart sandbox: upgrade failed:\nStatefulSet default/etcd: every pod is Ready, but "
        "the member set is not done in time: still a learner: etcd-3"
    ), result.stderr
    assert [m["name"] for m in _member_list(sb, "etcd-0") if m.get("isLearner")] == ["etcd-3"]


def test_pod_and_container_messages(
    sandbox: Callable[..., Sandbox], chart_dir: Path, sandbox_cli: CLI
) -> None:
    sb = sandbox(str(chart_dir))
    state = ["--state-dir", str(sb.state_dir)]
    # etcdctl arguments without `--`, options of etcdctl and of the sandbox mixed.
    listed = sandbox_cli("etcdctl", "etcd-0", *state, "member", "list", "-w", "json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["members"]) == 3

    sb.stop("etcd-1")
    stopped = sandbox_cli("etcdctl", "etcd-1", *state, "endpoint", "health")
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (
        1,
        "",
        "etcd-chart sandbox: pod 'etcd-1' is stopped; `start etcd-1` brings it back\n",
    )
    unknown = sandbox_cli("kill", "etcd-7", *state)
    assert unknown.stderr == (
        "etcd-chart sandbox: no pod 'etcd-7' runs in the sandbox; pods: etcd-0, etcd-1, etcd-2\n"
    )
    containers = "etcd, member-agent, prepare"
    logs = sandbox_cli("logs", "etcd-0", "-c", "nope", *state)
    assert (logs.returncode, logs.stderr) == (
        1,
        f"etcd-chart sandbox: pod etcd-0 has no container 'nope' with a log; its containers: "
        f"{containers}\n",
    )
    for action in (["kill", "etcd-0", "-c", "nope"], ["etcdctl", "etcd-0", "-c", "nope"]):
        result = sandbox_cli(*action, *state)
        assert (result.returncode, result.stderr) == (
            1,
            f"etcd-chart sandbox: pod default/etcd-0 has no container 'nope'; its containers: "
            f"{containers}\n",
        ), action
    sb.start("etcd-1")
    sb.wait_ready(timeout=120)
