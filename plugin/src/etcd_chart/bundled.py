"""Where the chart is: bundled into the installed package, else in the repository checkout.

A wheel carries the chart as `etcd_chart/chart/` (plugin/setup.py copies it at build time); an
editable install or `PYTHONPATH=plugin/src` uses `chart/` of the checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_CHART = Path(__file__).resolve().parent / "chart"
CHECKOUT_CHART = Path(__file__).resolve().parents[3] / "chart"


def chart_dir() -> Path | None:
    """The chart directory, or None when neither the package nor a checkout has one."""
    for candidate in (PACKAGE_CHART, CHECKOUT_CHART):
        if (candidate / "Chart.yaml").is_file():
            return candidate
    return None


def chart_candidates() -> tuple[Path, ...]:
    return (PACKAGE_CHART, CHECKOUT_CHART)
