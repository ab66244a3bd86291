"""Where the chart and the Helm plugin manifest are: bundled into the installed package, else in
the repository checkout; and the version, which is the chart's.

A wheel carries the chart as `etcd_chart/chart/` and plugin.yaml as `etcd_chart/helm_plugin/`
(plugin/setup.py copies them at build time); an editable install or `PYTHONPATH=plugin/src` uses
`chart/` and `plugin/` of the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parents[2]
PACKAGE_CHART = PACKAGE / "chart"
CHECKOUT_CHART = CHECKOUT / "chart"
PACKAGE_PLUGIN_MANIFEST = PACKAGE / "helm_plugin" / "plugin.yaml"
CHECKOUT_PLUGIN_MANIFEST = CHECKOUT / "plugin" / "plugin.yaml"


def chart_dir() -> Path | None:
    """The chart directory, or None when neither the package nor a checkout has one."""
    for candidate in (PACKAGE_CHART, CHECKOUT_CHART):
        if (candidate / "Chart.yaml").is_file():
            return candidate
    return None


def chart_candidates() -> tuple[Path, ...]:
    return (PACKAGE_CHART, CHECKOUT_CHART)


def plugin_manifest() -> Path:
    """The Helm 4 plugin manifest (plugin.yaml) of this package or checkout."""
    for candidate in (PACKAGE_PLUGIN_MANIFEST, CHECKOUT_PLUGIN_MANIFEST):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no Helm plugin manifest at {PACKAGE_PLUGIN_MANIFEST} or {CHECKOUT_PLUGIN_MANIFEST}: "
        "the package was built without it; reinstall it from a wheel built by plugin/setup.py"
    )


def chart_version(chart: Path) -> str:
    """The top-level `version` of `chart`/Chart.yaml (a plain line; no YAML parser needed)."""
    text = (chart / "Chart.yaml").read_text()
    found = re.search(r"^version:\s*[\"']?([^\"'\s#]+)", text, re.MULTILINE)
    if found is None:
        raise ValueError(f"{chart / 'Chart.yaml'}: no version")
    return found.group(1)


def version() -> str:
    """The package's version: the version of the chart it carries (or of the checkout's)."""
    chart = chart_dir()
    return chart_version(chart) if chart is not None else "unknown"
