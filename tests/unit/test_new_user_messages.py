"""What a new user reads: finding helm, the sandbox's command line and messages, post-render hints.

Each runs the real command (`python -m etcd_chart.cli ...`) or the real helm binary, and asserts
the exact exit code and message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from etcd_chart import helm as helm_module
from etcd_chart.helm import ToolMissing, find_helm
from etcd_chart.postrender import checks
from etcd_chart.postrender.members import MemberSet
from etcd_chart.sandbox import command as sandbox_command
from etcd_chart.sandbox import voters
from etcd_chart.sandbox.render import RenderArgs, RenderError, helm_template
from etcd_chart.yamlio import Document

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "etcd_chart.cli"]


def run_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


# --- helm from PATH ----------------------------------------------------------------------------


@pytest.fixture
def only_path_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm3: str) -> Path:
    """No cached helm3/helm4; PATH has only the real Helm 3 binary under the name `helm`."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    path_dir = tmp_path / "bin"
    path_dir.mkdir()
    (path_dir / "helm").symlink_to(helm3)
    monkeypatch.setattr(helm_module, "CACHE_BIN", cache)
    monkeypatch.setattr(helm_module, "INSTALL_SCRIPT", tmp_path / "no-such-script.sh")
    monkeypatch.setenv("PATH", str(path_dir))
    return path_dir / "helm"


def test_helm_on_path_is_used_after_checking_its_version(only_path_helm: Path) -> None:
    assert find_helm() == str(only_path_helm)
    assert find_helm(3) == str(only_path_helm)
    with pytest.raises(ToolMissing) as err:
        find_helm(4)
    assert str(err.value) == (
        f"{only_path_helm} is Helm 3, not Helm 4; put Helm 4 on PATH as `helm` or `helm4`"
    )


def test_sandbox_renders_with_the_helm_on_path(only_path_helm: Path) -> None:
    rendered = helm_template(RenderArgs(chart=str(REPO / "chart")))
    assert "kind: StatefulSet" in rendered


def test_no_helm_tells_a_pip_user_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helm_module, "CACHE_BIN", tmp_path)
    monkeypatch.setattr(helm_module, "INSTALL_SCRIPT", tmp_path / "no-such-script.sh")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as err:
        find_helm()
    assert (
        str(err.value) == "helm is not installed; install Helm 3 or 4 and put it on PATH as `helm`"
    )
    with pytest.raises(RenderError) as render_err:
        helm_template(RenderArgs(chart=str(REPO / "chart")))
    assert "install-tools" not in str(render_err.value)
    assert render_err.value.code == 2


def test_helm_template_failure_names_the_helm_command_not_a_sandbox_debug_flag(
    tmp_path: Path, helm4: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(REPO / "chart", chart)
    (chart / "templates" / "broken.yaml").write_text("kind: ConfigMap\ndata:\n  a: [\n")
    monkeypatch.setattr(helm_module, "find_tool", lambda name: helm4)
    with pytest.raises(RenderError) as err:
        helm_template(RenderArgs(chart=str(chart), helm_version=4))
    message = str(err.value)
    assert "Use --debug flag" not in message
    assert message.endswith(
        f"(to see the invalid YAML, run helm yourself: {helm4} template etcd {chart} "
        "--namespace default --debug)"
    )


# --- the sandbox's command line ----------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sandbox_command.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["etcd-0", "--state-dir", "/s", "member", "list", "-w", "table"],
            ["member", "list", "-w", "table"],
        ),
        (
            ["etcd-0", "member", "list", "--state-dir", "/s", "--write-out=json"],
            ["member", "list", "--write-out=json"],
        ),
        (["etcd-0", "--state-dir", "/s", "get", "--prefix", "/app/"], ["get", "--prefix", "/app/"]),
        (
            ["etcd-0", "--state-dir", "/s", "--", "member", "list", "-c", "x"],
            ["member", "list", "-c", "x"],
        ),
    ],
)
def test_etcdctl_arguments_need_no_double_dash(argv: list[str], expected: list[str]) -> None:
    parsed = _parse("etcdctl", *argv)
    assert (parsed.pod, parsed.state_dir, parsed.args) == ("etcd-0", "/s", expected)


def test_sandbox_flags_still_apply_among_etcdctl_arguments() -> None:
    parsed = _parse("etcdctl", "etcd-0", "-c", "etcd", "put", "k", "v", "--state-dir", "/s")
    assert (parsed.container, parsed.args) == ("etcd", ["put", "k", "v"])


def test_logs_of_an_unknown_container_names_it_and_lists_the_containers(tmp_path: Path) -> None:
    logs = tmp_path / "state" / "logs" / "default" / "etcd-0"
    logs.mkdir(parents=True)
    for name in ("etcd", "member-agent", "prepare"):
        (logs / f"{name}.log").write_text(f"{name} says hello\n")
    result = run_cli(
        "sandbox", "logs", "etcd-0", "-c", "nope", "--state-dir", str(tmp_path / "state")
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "etcd-chart sandbox: pod etcd-0 has no container 'nope' with a log; its containers: "
        "etcd, member-agent, prepare\n"
    )
    shown = run_cli(
        "sandbox", "logs", "etcd-0", "-c", "prepare", "--state-dir", str(tmp_path / "state")
    )
    assert (shown.returncode, shown.stdout) == (0, "prepare says hello\n")


def test_down_on_a_mistyped_state_dir_does_not_create_it(tmp_path: Path) -> None:
    typo = tmp_path / "sandbx"
    result = run_cli("sandbox", "down", "--state-dir", str(typo))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"etcd-chart sandbox: {typo} does not exist: no sandbox to stop (check --state-dir)\n"
    )
    assert not typo.exists()


def test_down_purge_never_removes_a_directory_that_is_not_a_sandbox(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me\n")
    result = run_cli("sandbox", "down", "--purge", "--state-dir", str(precious))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"etcd-chart sandbox: {precious} is not a sandbox state directory (no daemon.log, "
        "network.json or volumes): nothing stopped, nothing removed (check --state-dir)\n"
    )
    assert (precious / "notes.txt").read_text() == "keep me\n"


# --- done means voters only --------------------------------------------------------------------


def _member_list(*members: tuple[str, bool]) -> str:
    body = ",".join(
        f'{{"ID": {i + 1}, "name": "{name}", "isLearner": {str(learner).lower()}}}'
        for i, (name, learner) in enumerate(members)
    )
    return f'{{"members": [{body}]}}'


def test_a_learner_keeps_the_member_set_from_being_done() -> None:
    pods = ["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]
    listing = _member_list(*((p, p == "etcd-4") for p in pods))
    assert voters.problem(lambda args: (0, listing, ""), pods) == "still a learner: etcd-4"
    voting = _member_list(*((p, False) for p in pods))
    assert voters.problem(lambda args: (0, voting, ""), pods) is None
    unstarted = _member_list(*((p, False) for p in pods[:4]), ("", True))
    assert voters.problem(lambda args: (0, unstarted, ""), pods) == (
        "still a learner: 5; 1 member(s) added but not started; not a member yet: etcd-4"
    )


# --- post-render hints -------------------------------------------------------------------------

EVEN = (
    (REPO / "tests" / "data" / "postrender" / "chart-like.yaml")
    .read_text()
    .replace("replicas: 3", "replicas: 4", 1)
)
HINT = (
    "hint: run `helm template RELEASE CHART [your flags] | etcd-chart post-render` "
    "to see the same check\n"
)


def test_post_render_run_by_hand_does_not_tell_you_to_run_it_by_hand() -> None:
    env = {**os.environ, "ETCD_CHART_NO_TTY": "1"}
    env.pop("HELM_PLUGIN_NAME", None)
    result = run_cli("post-render", input=EVEN, env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "spec.replicas: 4 members" in result.stderr
    assert "hint:" not in result.stderr
    under_helm = run_cli("post-render", input=EVEN, env={**env, "HELM_PLUGIN_NAME": "etcd-chart"})
    assert under_helm.returncode == 1
    assert under_helm.stderr == result.stderr + HINT


def _member_set(chart_owned: bool) -> MemberSet:
    body = {"kind": "StatefulSet", "metadata": {"name": "etcd"}, "spec": {"replicas": 3}}
    return MemberSet(
        statefulset=Document(body=body), chart_owned=chart_owned, namespace="db", settings=None
    )


def test_certificate_coverage_fix_names_the_value_chart_users_set() -> None:
    assert checks.max_members_fix(_member_set(True)) == (
        "set tls.maxMembers to the largest member count it may grow to (the chart writes it into "
        "the StatefulSet annotation etcd-chart/max-members)"
    )
    assert checks.max_members_fix(_member_set(False)) == (
        "annotate the StatefulSet etcd-chart/max-members with the largest member count it may "
        "grow to"
    )
