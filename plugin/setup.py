"""Build step: bundle the chart (and with it the values schema) into the package.

The wheel carries the chart as `etcd_chart/chart/`, so an installed `etcd-chart` finds the
schema, the defaults and the chart's cross-field rules without the repository. The source is
`../chart` in a checkout; an sdist carries a copy as `bundled/chart`. chart/values.schema.json is
itself generated from schemas/values.schema.json (ci/generate.py), so there is one source.
"""

from __future__ import annotations

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


class BuildWithChart(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "etcd_chart" / "chart"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(chart_source(), target, ignore=IGNORE)


class SdistWithChart(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "bundled" / "chart"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(chart_source(), target, ignore=IGNORE)


setup(cmdclass={"build_py": BuildWithChart, "sdist": SdistWithChart})
