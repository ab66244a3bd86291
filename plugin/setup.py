"""Build step: bundle the chart (and with it the values schema) and the Helm plugin manifest into
the package, and take the package's version from the chart.

The wheel carries the chart as `etcd_chart/chart/`, so an installed `etcd-chart` finds the
schema, the defaults and the chart's cross-field rules without the repository, and the Helm 4
plugin manifest as `etcd_chart/helm_plugin/plugin.yaml`, from which the sandbox installs the
plugin. The chart's source is `../chart` in a checkout; an sdist carries a copy as
`bundled/chart` (plugin.yaml is in the sdist through MANIFEST.in). chart/values.schema.json is
itself generated from schemas/values.schema.json (ci/generate.py), so there is one source.

The version is Chart.yaml's `version`: one number names the chart, the package and the plugin
(tests/unit/test_versions.py holds plugin.yaml to it).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def chart_source() -> Path:
    for candidate in (HERE.parent / "chart", HERE / "bundled" / "chart"):
        if (candidate / "Chart.yaml").is_file():
            return candidate
    raise SystemExit(f"etcd-chart build: no chart at {HERE.parent / 'chart'} to bundle")


def chart_version() -> str:
    """Chart.yaml's top-level `version` (no YAML parser at build time: it is one plain line)."""
    text = (chart_source() / "Chart.yaml").read_text()
    found = re.search(r"^version:\s*[\"']?([^\"'\s#]+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"etcd-chart build: {chart_source() / 'Chart.yaml'} has no version")
    return found.group(1)


class BuildWithChart(build_py):
    def run(self) -> None:
        super().run()
        package = Path(self.build_lib) / "etcd_chart"
        shutil.rmtree(package / "chart", ignore_errors=True)
        shutil.copytree(chart_source(), package / "chart", ignore=IGNORE)
        (package / "helm_plugin").mkdir(exist_ok=True)
        shutil.copyfile(HERE / "plugin.yaml", package / "helm_plugin" / "plugin.yaml")


class SdistWithChart(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "bundled" / "chart"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(chart_source(), target, ignore=IGNORE)


setup(version=chart_version(), cmdclass={"build_py": BuildWithChart, "sdist": SdistWithChart})
