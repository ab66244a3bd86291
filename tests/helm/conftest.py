"""Fixtures of the real-Helm tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helmhome import helm_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory, helm4: str) -> Path:
    home = tmp_path_factory.mktemp("helm-home")
    result = subprocess.run(
        [helm4, "plugin", "install", str(REPO / "plugin")],
        capture_output=True,
        text=True,
        env=helm_env(home, 4),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [helm4, "plugin", "list"], capture_output=True, text=True, env=helm_env(home, 4)
    )
    assert "etcd-chart\t0.1.0  \tpostrenderer/v1" in listed.stdout
    return home
