"""Generate the files derived from schemas/values.schema.json and LICENSE, or check that they are
current.

- chart/values.schema.json: a byte-for-byte copy (Helm reads it from the chart).
- chart/LICENSE: a copy of LICENSE, so the packaged chart (and the wheel, which bundles the chart)
  carries the license text (Artifact Hub shows it).
- README.md: the values table between `<!-- values-table:start -->` and `<!-- values-table:end -->`
  (key, type, default from chart/values.yaml, description from the schema).

`python ci/generate.py` writes them; `python ci/generate.py --check` writes nothing and exits 1
naming every stale file. Exit 2 when it cannot run (a missing file or marker, chart/values.yaml
not valid against the schema).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Path("schemas/values.schema.json")
CHART_SCHEMA = Path("chart/values.schema.json")
VALUES = Path("chart/values.yaml")
README = Path("README.md")
LICENSE = Path("LICENSE")
CHART_LICENSE = Path("chart/LICENSE")
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


class GenerateError(Exception):
    """The inputs are missing or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_of(node: dict[str, Any]) -> str:
    kind = node.get("type", "any")
    text = "/".join(kind) if isinstance(kind, list) else str(kind)
    if kind == "array" and isinstance(node.get("items"), dict) and "type" in node["items"]:
        text = f"array of {node['items']['type']}"
    if "enum" in node:
        text += ": " + ", ".join(f"`{json.dumps(item)}`" for item in node["enum"])
    return text


def _default_of(values: Any, path: list[str]) -> str:
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    return f"`{json.dumps(node, separators=(', ', ': '), ensure_ascii=False)}`"


def rows(schema: dict[str, Any], values: Any) -> Iterator[Row]:
    """One row per value: leaves, and objects whose content is free (maps, Kubernetes objects)."""

    def walk(node: dict[str, Any], path: list[str]) -> Iterator[Row]:
        properties = node.get("properties")
        row = Row(
            key=".".join(path),
            type=_type_of(node),
            default=_default_of(values, path) or "unset",
            description=str(node.get("description", "")),
        )
        if path and not (node.get("type") == "object" and properties):
            yield row
            return
        if path and row.default == "`{}`":  # an optional chart object: say what it is first
            yield row
        for name, child in (properties or {}).items():
            yield from walk(child, [*path, name])

    yield from walk(schema, [])


def values_table(schema: dict[str, Any], values: Any) -> str:
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows(schema, values):
        cells = (f"`{row.key}`", row.type, row.default, row.description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def with_table(readme: str, table: str) -> str:
    """README text with the table between the markers replaced."""
    start = readme.find(START)
    end = readme.find(END)
    if start < 0 or end < start:
        raise GenerateError(f"{README}: the markers {START} and {END} are missing or out of order")
    return readme[: start + len(START)] + "\n" + table + readme[end:]


def _validate_values(schema: dict[str, Any], values: Any) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    problems = sorted(validator.iter_errors(values), key=lambda error: list(error.absolute_path))
    if problems:
        details = "; ".join(
            f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in problems
        )
        raise GenerateError(f"{VALUES}: not valid against {SCHEMA}: {details}")


def expected_files(repo: Path) -> dict[Path, str]:
    """Every generated file and the content it must have."""
    try:
        schema_text = (repo / SCHEMA).read_text(encoding="utf-8")
        license_text = (repo / LICENSE).read_text(encoding="utf-8")
        values = yaml.safe_load((repo / VALUES).read_text(encoding="utf-8"))
    except OSError as err:
        raise GenerateError(f"cannot read {err.filename}: {err.strerror}") from err
    try:
        schema = json.loads(schema_text)
    except json.JSONDecodeError as err:
        raise GenerateError(f"{SCHEMA}: not valid JSON: {err}") from err
    _validate_values(schema, values)
    readme_path = repo / README
    readme = (
        readme_path.read_text(encoding="utf-8") if readme_path.exists() else f"{START}\n{END}\n"
    )
    return {
        CHART_SCHEMA: schema_text,
        CHART_LICENSE: license_text,
        README: with_table(readme, values_table(schema, values)),
    }


def stale_files(repo: Path, expected: dict[Path, str]) -> list[Path]:
    stale = []
    for path, content in expected.items():
        target = repo / path
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != content:
            stale.append(path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        expected = expected_files(args.repo)
    except GenerateError as err:
        print(f"ci/generate.py: {err}", file=sys.stderr)
        return 2
    stale = stale_files(args.repo, expected)
    if args.check:
        for path in stale:
            print(f"ci/generate.py: {path} is stale; run `python ci/generate.py`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        (args.repo / path).write_text(expected[path], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
