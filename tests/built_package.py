"""The Python package as a release builds it (`python -m build`: the sdist first, the wheel from
the unpacked sdist), and the wheel installed into a fresh virtual environment: what the tests of
the installed package, the Argo CD plugin and the Helm plugin archive run, instead of the source
tree. Built once per test run: the pytest-xdist workers share it through a lock in the run's
common temporary directory."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuiltPackage:
    wheel: Path
    sdist: Path
    venv: Path  # a fresh virtual environment with the wheel installed

    @property
    def command(self) -> Path:
        """The `etcd-chart` console script pip installed."""
        return self.venv / "bin" / "etcd-chart"


def check(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"


def fresh_venv(path: Path, package: Path) -> Path:
    """A new virtual environment at `path` with `package` (a wheel or an sdist) pip-installed."""
    venv.create(path, with_pip=True)
    check([str(path / "bin" / "python"), "-m", "pip", "install", "-q", str(package)], path.parent)
    return path


def _shared_root(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    # Under xdist each worker's base is <run>/popen-gwN; <run> is common to the run's workers.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_package(factory: pytest.TempPathFactory) -> BuiltPackage:
    root = _shared_root(factory) / "built-package"
    root.mkdir(exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dist, env_dir, done = root / "dist", root / "venv", root / "done"
        if not done.exists():
            shutil.rmtree(dist, ignore_errors=True)
            shutil.rmtree(env_dir, ignore_errors=True)
            clone = root / "clone"  # the parts of a checkout the build reads, no build leftovers
            shutil.rmtree(clone, ignore_errors=True)
            ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "bundled")
            for part in ("plugin", "chart", "schemas"):
                shutil.copytree(REPO / part, clone / part, ignore=ignore)
            check([sys.executable, "-m", "build", "--outdir", str(dist), "./plugin"], clone)
            (wheel,) = dist.glob("etcd_chart-*.whl")
            fresh_venv(env_dir, wheel)
            done.touch()
        (wheel,) = dist.glob("etcd_chart-*.whl")
        (sdist,) = dist.glob("etcd_chart-*.tar.gz")
        return BuiltPackage(wheel, sdist, env_dir)
