"""Tools around the etcd Helm chart: post-renderer, validator, PKI and sandbox."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is the chart's (plugin/setup.py builds the package under it); read on demand so
    # that importing the package reads no file.
    if name == "__version__":
        from etcd_chart.bundled import version

        return version()
    raise AttributeError(f"module 'etcd_chart' has no attribute {name!r}")
