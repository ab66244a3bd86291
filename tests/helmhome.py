"""Helm homes for the real-Helm tests: Helm 3 and Helm 4 each get their own directories under the
test's home, and no kubeconfig unless the test gives one."""

from __future__ import annotations

import os
from pathlib import Path

from etcd_chart.helm import isolated_helm_env


def helm_env(home: Path, major: int, **extra: str) -> dict[str, str]:
    return isolated_helm_env(home / f"helm{major}", os.devnull, **extra)
