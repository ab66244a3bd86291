"""The etcd releases the tests run, and their binaries (shared by the conftest files)."""

from __future__ import annotations

import pytest
from etcd_chart.sandbox.binaries import Tools

# The etcd releases the tests run: 3.5 from Debian and the builds of ci/gobuild/etcd-3.6 and
# etcd-3.7 (ci/install-tools.sh puts them all in .cache/etcd/v<version>/).
ETCD_MINORS = ("3.5", "3.6", "3.7")
ETCD_TOOLS = Tools()


def etcd_release(minor: str) -> str:
    """The newest etcd version of a minor release that this machine has binaries for."""
    found = [v for v in ETCD_TOOLS.versions() if v.startswith(f"{minor}.")]
    if not found:
        pytest.fail(
            f"no etcd {minor} binaries (found {', '.join(ETCD_TOOLS.versions()) or 'none'}); "
            "run `bash ci/install-tools.sh`",
            pytrace=False,
        )
    return found[0]


def etcd_program(version: str, program: str) -> str:
    found = ETCD_TOOLS.find(program, version)
    if found is None:
        pytest.fail(f"no {program} {version}; run `bash ci/install-tools.sh`", pytrace=False)
    return found
