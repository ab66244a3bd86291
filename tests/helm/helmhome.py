"""Helm homes for the real-Helm tests: Helm 3 and Helm 4 each get their own directories, and Helm 4
the post-renderer plugin installed from plugin/."""

from __future__ import annotations

import os
from pathlib import Path


def helm_env(home: Path, major: int, **extra: str) -> dict[str, str]:
    """Each Helm its own directories: a Helm 4 plugin.yaml where Helm 3 looks breaks Helm 3."""
    base = home / f"helm{major}"
    env = {
        **os.environ,
        "HELM_DATA_HOME": str(base / "data"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_CACHE_HOME": str(base / "cache"),
        # helm 4.3 installs into $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says.
        "HELM_PLUGINS": str(base / "data" / "plugins"),
        "KUBECONFIG": os.devnull,
        "ETCD_CHART_NO_TTY": "1",
    }
    env.update(extra)
    return env
