"""One version names the chart, the Python package and the Helm plugin: Chart.yaml's `version`.

The package takes it at build time (plugin/setup.py) and `etcd_chart.__version__` reads it from
the chart it carries; plugin.yaml cannot derive it (Helm reads the file as it is), so it is held to
the chart's here. tests/cli/test_installed_package.py checks the built wheel and sdist carry it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import etcd_chart
import pytest
import yaml
from etcd_chart.cli import main

REPO = Path(__file__).resolve().parents[2]


def chart_version() -> str:
    return str(yaml.safe_load((REPO / "chart" / "Chart.yaml").read_text())["version"])


def test_package_version_is_the_charts() -> None:
    assert etcd_chart.__version__ == chart_version()


def test_plugin_manifest_version_is_the_charts() -> None:
    manifest = yaml.safe_load((REPO / "plugin" / "plugin.yaml").read_text())
    assert manifest["version"] == chart_version()


def test_pyproject_has_no_version_of_its_own() -> None:
    project = tomllib.loads((REPO / "plugin" / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]


def test_cli_reports_the_charts_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"etcd-chart {chart_version()}\n"
