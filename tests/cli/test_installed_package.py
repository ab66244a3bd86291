"""What a new user gets from a plain `pip install` of the built wheel or sdist, outside the
repository.

The sdist and the wheel are built from plugin/ as a release builds them (tests/built_package.py),
each installed into a fresh virtual environment (no editable install, no repository on sys.path),
and every command runs from a directory that holds only the user's own files: a values file and
the chart as `helm package` made it. The tools a user installs next to the package (helm, kubectl,
etcd, the Kubernetes control plane) come from a bin directory of their own.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from built_package import REPO, built_package, check, fresh_venv
from etcd_chart.helm import find_tool
from etcd_chart.sandbox.controlplane import find_binaries

VERSION = str(yaml.safe_load((REPO / "chart" / "Chart.yaml").read_text())["version"])

# Its module-scoped fixtures are shared: the whole module runs in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_installed_package")]


@dataclass(frozen=True)
class Installed:
    venv: Path
    tools: Path
    workdir: Path
    wheel: Path
    sdist: Path
    sdist_venv: Path
    chart_package: Path  # `helm package chart`, copied into workdir

    def run(
        self, *args: str, timeout: float = 300, venv: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        chosen = venv or self.venv
        env = {
            "PATH": os.pathsep.join([str(self.tools), str(chosen / "bin"), "/usr/bin", "/bin"]),
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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    package = built_package(tmp_path_factory)
    root = tmp_path_factory.mktemp("installed")
    sdist_env = fresh_venv(root / "sdist-venv", package.sdist)
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
    check([helm, "package", str(REPO / "chart"), "--destination", str(workdir)], root)
    (root / "home").mkdir()
    yield Installed(
        package.venv,
        tools,
        workdir,
        package.wheel,
        package.sdist,
        sdist_env,
        workdir / f"etcd-{VERSION}.tgz",
    )


def test_wheel_and_sdist_carry_the_charts_version(installed: Installed) -> None:
    assert installed.wheel.name == f"etcd_chart-{VERSION}-py3-none-any.whl"
    assert installed.sdist.name == f"etcd_chart-{VERSION}.tar.gz"
    for env in (installed.venv, installed.sdist_venv):
        result = installed.run("etcd-chart", "--version", venv=env)
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            f"etcd-chart {VERSION}\n",
            "",
        )


def test_wheel_carries_the_chart_schema_and_plugin_manifest(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        schema = wheel.read("etcd_chart/chart/values.schema.json")
        manifest = wheel.read("etcd_chart/helm_plugin/plugin.yaml")
    for required in (
        "etcd_chart/py.typed",
        "etcd_chart/chart/Chart.yaml",
        "etcd_chart/chart/LICENSE",
        "etcd_chart/chart/values.yaml",
        "etcd_chart/chart/templates/statefulset.yaml",
        "etcd_chart/chart/files/etcd-agent/__main__.py",
        "etcd_chart/chart/files/webui/server.py",
    ):
        assert required in names
    assert [name for name in names if "__pycache__" in name] == []
    assert schema == (REPO / "schemas" / "values.schema.json").read_bytes()
    assert manifest == (REPO / "plugin" / "plugin.yaml").read_bytes()


def test_sdist_carries_what_the_wheel_is_built_from(installed: Installed) -> None:
    top = f"etcd_chart-{VERSION}"
    with tarfile.open(installed.sdist) as sdist:
        names = set(sdist.getnames())
    for required in (
        "setup.py",
        "pyproject.toml",
        "plugin.yaml",
        "bin/etcd-post-render",
        "src/etcd_chart/cli.py",
        "bundled/chart/Chart.yaml",
        "bundled/chart/values.schema.json",
    ):
        assert f"{top}/{required}" in names


def test_sdist_install_validates(installed: Installed) -> None:
    (installed.workdir / "sdist-values.yaml").write_text("replicas: 3\n")
    result = installed.run("etcd-chart", "validate", "sdist-values.yaml", venv=installed.sdist_venv)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "sdist-values.yaml: valid\n"


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
    rendered = installed.run("helm", "template", "etcd", installed.chart_package.name)
    assert rendered.returncode == 0, rendered.stderr
    manifest = installed.workdir / "rendered.yaml"
    manifest.write_text(rendered.stdout)
    result = installed.run(
        "sh", "-c", "python -X importtime -m etcd_chart.cli post-render --offline < rendered.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert "kind: StatefulSet" in result.stdout
    assert "etcd-0=http://etcd-0.etcd-headless.default.svc.cluster.local:2380," in result.stdout
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "yaml" in imported
    assert [name for name in imported if name.startswith("kubernetes")] == []


def test_pki_writes_the_certificates(installed: Installed) -> None:
    result = installed.run("etcd-chart", "pki", "--out", "pki", "--replicas", "3")
    assert (result.returncode, result.stderr) == (0, "")
    assert sorted(path.name for path in (installed.workdir / "pki").iterdir()) == [
        f"{leaf}.{ext}" for leaf in sorted(("agent", "ca", "client", "peer", "server"))
        for ext in ("crt", "key")
    ]  # fmt: skip


def test_sandbox_up_after_a_plain_install(installed: Installed) -> None:
    state = installed.workdir / "sandbox"
    try:
        up = installed.run(
            "etcd-chart", "sandbox", "up", installed.chart_package.name, "--set", "replicas=1",
            "--state-dir", str(state),
        )  # fmt: skip
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
