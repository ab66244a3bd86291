"""ci/generate.py: the chart's schema copy and the README values table never drift."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from chartrender import REPO


def _generate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_generate", REPO / "ci" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_generate"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


generate = _generate_module()


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for path in (
        "schemas/values.schema.json",
        "chart/values.schema.json",
        "chart/values.yaml",
        "README.md",
        "LICENSE",
        "chart/LICENSE",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tmp_path / path)
    return tmp_path


def test_generated_files_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "ci" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_chart_schema_is_a_copy() -> None:
    assert (REPO / "chart/values.schema.json").read_bytes() == (
        REPO / "schemas/values.schema.json"
    ).read_bytes()


def test_chart_license_is_a_copy() -> None:
    assert (REPO / "chart/LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    assert (
        (REPO / "LICENSE")
        .read_text()
        .startswith("\n                                 Apache License")
    )


def test_check_names_a_stale_schema_copy(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo_copy / "chart/values.schema.json").write_text("{}\n")
    assert generate.main(["--check", "--repo", str(repo_copy)]) == 1
    assert capsys.readouterr().err == (
        "ci/generate.py: chart/values.schema.json is stale; run `python ci/generate.py`\n"
    )


def test_check_names_a_stale_readme_and_generate_fixes_it(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = repo_copy / "README.md"
    readme.write_text(readme.read_text().replace("| `replicas` |", "| `replicaz` |"))
    assert generate.main(["--check", "--repo", str(repo_copy)]) == 1
    assert (
        capsys.readouterr().err
        == "ci/generate.py: README.md is stale; run `python ci/generate.py`\n"
    )
    assert generate.main(["--repo", str(repo_copy)]) == 0
    assert readme.read_text() == (REPO / "README.md").read_text()
    assert generate.main(["--check", "--repo", str(repo_copy)]) == 0


def test_readme_created_with_markers_when_missing(repo_copy: Path) -> None:
    (repo_copy / "README.md").unlink()
    assert generate.main(["--repo", str(repo_copy)]) == 0
    text = (repo_copy / "README.md").read_text()
    assert text.startswith(generate.START + "\n| Key | Type | Default | Description |\n")
    assert text.endswith(generate.END + "\n")


def test_missing_markers_cannot_run(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo_copy / "README.md").write_text("# no table here\n")
    assert generate.main(["--check", "--repo", str(repo_copy)]) == 2
    assert "README.md: the markers" in capsys.readouterr().err


def test_values_must_match_the_schema(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = repo_copy / "chart/values.yaml"
    values.write_text(values.read_text().replace("replicas: 3", "replicas: three"))
    assert generate.main(["--check", "--repo", str(repo_copy)]) == 2
    assert "chart/values.yaml: not valid against schemas/values.schema.json: replicas:" in (
        capsys.readouterr().err
    )


def test_table_row_for_every_value() -> None:
    import json

    import yaml

    schema = json.loads((REPO / "schemas/values.schema.json").read_text())
    values = yaml.safe_load((REPO / "chart/values.yaml").read_text())
    rows = {row.key: row for row in generate.rows(schema, values)}
    assert rows["replicas"].default == "`3`"
    assert rows["podAntiAffinity.preset"].type == 'string: `"soft"`, `"hard"`, `"none"`'
    assert rows["resources"].type == "object"
    assert all(row.description for row in rows.values())


def test_schema_describes_every_key_and_closes_chart_objects() -> None:
    import json

    schema = json.loads((REPO / "schemas/values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: dict, path: str) -> None:
        assert node.get("description") or not path, f"{path}: no description"
        if node.get("properties"):
            assert node.get("additionalProperties") is False, f"{path}: not closed"
            for name, child in node["properties"].items():
                walk(child, f"{path}.{name}" if path else name)
        items = node.get("items")
        if isinstance(items, dict) and items.get("properties"):
            assert items.get("additionalProperties") is False, f"{path}[]: not closed"
            for name, child in items["properties"].items():
                walk(child, f"{path}[].{name}")

    walk(schema, "")
