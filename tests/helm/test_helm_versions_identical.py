"""Helm 3 with the executable post-renderer and Helm 4 with the plugin give the same ConfigMap data.

Helm 4 parses every template file on its own before it hands the stream to a post-renderer (and
parses the result again); a block scalar that ends a template file has no final line break there,
so its value would lose the trailing newline (`|-` instead of `|`) and switching Helm versions
would show a diff on a live release. Every scenario is compared byte for byte, and the agent
modules must arrive exactly as `chart/files/etcd-agent/*.py` are.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmhome import helm_env

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
WRAPPER = REPO / "plugin" / "bin" / "etcd-post-render"
SCENARIOS = sorted(
    p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")
)


def _configmap_data(helm: str, home: Path, major: int, scenario: str) -> dict[str, bytes]:
    renderer = str(WRAPPER) if major == 3 else "etcd-chart"
    result = subprocess.run(
        [
            helm,
            "template",
            "etcd",
            str(CHART),
            "--namespace",
            "etcd",
            "-f",
            str(CHART / "ci" / f"{scenario}-values.yaml"),
            "--post-renderer",
            renderer,
        ],
        capture_output=True,
        env=helm_env(home, major),
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    data: dict[str, bytes] = {}
    for body in yaml.safe_load_all(result.stdout):
        if not body or body["kind"] != "ConfigMap":
            continue
        items: dict[str, Any] = body.get("data") or {}
        for key, value in items.items():
            data[f"{body['metadata']['name']}/{key}"] = str(value).encode()
    return data


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_configmap_data_identical_from_helm3_and_helm4(
    helm3: str, helm4: str, helm_home: Path, scenario: str
) -> None:
    three = _configmap_data(helm3, helm_home, 3, scenario)
    four = _configmap_data(helm4, helm_home, 4, scenario)
    assert sorted(three) == sorted(four)
    differing = [
        f"{key}: Helm 3 ends {three[key][-20:]!r}, Helm 4 ends {four[key][-20:]!r}"
        for key in three
        if three[key] != four[key]
    ]
    assert differing == []
    modules = {
        path.name: path.read_bytes() for path in (CHART / "files" / "etcd-agent").glob("*.py")
    }
    code: dict[str, dict[str, bytes]] = {}
    for key, value in three.items():
        configmap, _, name = key.rpartition("/")
        if name.endswith(".py"):
            code.setdefault(configmap, {})[name] = value
    agent_code = {name: files for name, files in code.items() if "commands.py" in files}
    assert agent_code and all(files == modules for files in agent_code.values()), sorted(code)
    configs = [value for key, value in three.items() if key.endswith("/etcd.conf.json")]
    assert len(configs) == 1 and configs[0].endswith(b"\n}\n")
