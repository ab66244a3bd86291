"""What a new user gets from a plain `pip install` of the built wheel, outside the repository.

The wheel is built from plugin/ (`pip wheel`), installed into a fresh virtual environment under
tmp_path (no editable install, no repository on sys.path), and every command runs from a
directory that holds only the user's own files: a values file and a copy of the chart.
The tools a user installs next to the package (helm, kubectl, etcd, the Kubernetes control plane)
come from a bin directory of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import find_binaries

REPO = Path(__file__).resolve().parents[2]

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_installed_package")]


@dataclass(frozen=True)
class Installed:
    venv: Path
    tools: Path
    workdir: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.pathsep.join([str(self.tools), str(self.venv / "bin"), "/usr/bin", "/bin"]),
            "HOME": str(self.workdir.parent / "home"),
            "KUBECONFIG": os.devnull,
            "ETCD_CHART_NO_TTY": "1",
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=env,
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )


def _check(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    wheels = root / "wheels"
    clone = root / "clone"  # the parts of a checkout the build reads, without build leftovers
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    for part in ("plugin", "chart", "schemas"):
        shutil.copytree(REPO / part, clone / part, ignore=ignore)
    _check(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "./plugin"], clone
    )
    (wheel,) = wheels.glob("etcd_chart-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    _check([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], root)
    tools = root / "tools"
    tools.mkdir()
    helm = find_tool("helm4")
    (tools / "helm").symlink_to(helm)
    (tools / "helm4").symlink_to(helm)  # the sandbox's name for it (README: what it needs)
    for name in ("etcd", "etcdctl", "etcdutl", "kubectl"):
        (tools / name).symlink_to(find_tool(name))
    # The control plane the sandbox starts, as a user puts it on PATH (README: what it needs).
    plane = find_binaries(find_tool("etcd"))
    for program in (plane.apiserver, plane.controller_manager, plane.scheduler):
        (tools / Path(program).name).symlink_to(program)
    workdir = root / "work"
    workdir.mkdir()
    (root / "home").mkdir()
    yield Installed(env_dir, tools, workdir)


def test_the_package_is_not_the_repository(installed: Installed) -> None:
    result = installed.run("python", "-c", "import etcd_chart; print(etcd_chart.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(installed.venv / "lib")), result.stdout


def test_validate_works_from_any_directory(installed: Installed) -> None:
    (installed.workdir / "my-values.yaml").write_text("replicas: 5\n")
    result = installed.run("etcd-chart", "validate", "my-values.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (0, "my-values.yaml: valid\n", "")


def test_validate_reports_schema_and_rule_problems(installed: Installed) -> None:
    (installed.workdir / "typo.yaml").write_text("replicass: 3\n")
    (installed.workdir / "even.yaml").write_text("replicas: 4\n")
    result = installed.run("etcd-chart", "validate", "typo.yaml", "even.yaml")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "typo.yaml: replicass: unknown key (did you mean replicas?)\n"
        "even.yaml: replicas: 4 is even; it tolerates no more failures than 3 and needs a larger "
        "quorum (use 3 or 5, or set allowEvenReplicas=true)\n"
    )


def test_kubernetes_is_installed_but_not_imported_offline(installed: Installed) -> None:
    assert installed.run("python", "-c", "import kubernetes").returncode == 0
    rendered = installed.run("helm", "template", "etcd", str(REPO / "chart"))
    assert rendered.returncode == 0, rendered.stderr
    manifest = installed.workdir / "rendered.yaml"
    manifest.write_text(rendered.stdout)
    result = installed.run(
        "sh", "-c", "python -X importtime -m etcd_chart.cli post-render --offline < rendered.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert "kind: StatefulSet" in result.stdout
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "yaml" in imported
    assert [name for name in imported if name.startswith("kubernetes")] == []


def test_sandbox_up_after_a_plain_install(installed: Installed) -> None:
    shutil.copytree(REPO / "chart", installed.workdir / "chart")
    state = installed.workdir / "sandbox"
    try:
        up = installed.run(
            "etcd-chart", "sandbox", "up", "chart", "--set", "replicas=1", "--state-dir", str(state)
        )
        assert up.returncode == 0, up.stderr
        health = installed.run(
            "etcd-chart",
            "sandbox",
            "etcdctl",
            "etcd-0",
            "--state-dir",
            str(state),
            "--",
            "endpoint",
            "health",
        )
        assert health.returncode == 0, health.stderr
        assert " is healthy: successfully committed proposal" in health.stdout
    finally:
        down = installed.run("etcd-chart", "sandbox", "down", "--purge", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert left.stdout == ""
