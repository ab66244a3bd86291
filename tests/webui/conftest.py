"""The Web UI's modules are imported as its pod runs them: chart/files/webui/ with the member
agent's etcd_client.py and errors.py beside it (here: the agent's directory on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "chart" / "files"
for directory in (FILES / "etcd-agent", FILES / "webui"):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
