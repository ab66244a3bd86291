"""`etcd-chart validate VALUES_FILE...`: check values files against the chart's JSON schema.

Each file is merged over the chart's defaults (`values.yaml` beside the schema), as Helm does
before it validates, and checked against `chart/values.schema.json` (else
`schemas/values.schema.json`; `--schema` picks another) as JSON Schema draft-07. Every problem of
every file is reported in one run, one line each: `file: dotted.key: message (fix)`; an unknown key
names the closest known key. Exit 0 when every file is valid, 1 when any is not, 2 when a file or
the schema cannot be read.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from etcd_chart.report import Problem, values_place

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_CANDIDATES = (
    REPO_ROOT / "chart" / "values.schema.json",
    REPO_ROOT / "schemas" / "values.schema.json",
)


class CannotRun(Exception):
    """A file or the schema could not be read."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("values_files", nargs="+", metavar="VALUES_FILE", help="values files")
    parser.add_argument(
        "--schema", help="JSON schema (default: chart/values.schema.json, else schemas/...)"
    )
    parser.add_argument(
        "--defaults",
        help="values the files are merged over (default: values.yaml of the chart); "
        "'none' to check the files alone",
    )


def find_schema(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in SCHEMA_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise CannotRun(
        f"no values schema found at {' or '.join(str(c) for c in SCHEMA_CANDIDATES)} "
        "(pass --schema)"
    )


def load_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CannotRun(f"{path}: cannot read the schema: {err}") from err
    if not isinstance(schema, dict):
        raise CannotRun(f"{path}: the schema is not a JSON object")
    return schema


def load_values(path: Path) -> Any:
    from etcd_chart import yamlio

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CannotRun(f"{path}: cannot read: {err}") from err
    try:
        return yamlio.load(text)
    except yamlio.YamlError as err:
        raise ValueError(str(err).splitlines()[0]) from err


def coalesce(defaults: Any, overrides: Any) -> Any:
    """Helm's merge of a values file over the defaults: maps merge, null removes a default."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted(path: list[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _known_keys(schema: dict[str, Any]) -> list[str]:
    return sorted((schema.get("properties") or {}).keys())


def _fix(error: Any) -> str:
    validator = error.validator
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "type":
        kinds = value if isinstance(value, list) else [value]
        return f"use a value of type {' or '.join(str(k) for k in kinds)}"
    if validator == "enum":
        return "use one of: " + ", ".join(json.dumps(v) for v in value)
    if validator == "const":
        return f"use {json.dumps(value)}"
    if validator == "pattern":
        return f"use a value matching {value}"
    if validator in ("minimum", "exclusiveMinimum"):
        return f"use a number {'>=' if validator == 'minimum' else '>'} {value}"
    if validator in ("maximum", "exclusiveMaximum"):
        return f"use a number {'<=' if validator == 'maximum' else '<'} {value}"
    if validator in ("minLength", "maxLength"):
        return f"use {'at least' if validator == 'minLength' else 'at most'} {value} characters"
    if validator in ("minItems", "maxItems"):
        return f"give {'at least' if validator == 'minItems' else 'at most'} {value} items"
    if validator == "required":
        return "add it"
    description = schema.get("description")
    if isinstance(description, str) and description:
        return description.split(". ")[0].rstrip(".")
    return "see the chart's values.schema.json"


def _leaf_errors(error: Any) -> list[Any]:
    """For anyOf/oneOf, the errors of the branch that came closest, else the error itself."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        return [best] if best is not None else [error]
    return [error]


def check_instance(values: Any, schema: dict[str, Any], file: str) -> list[Problem]:
    from jsonschema import Draft7Validator

    validator = Draft7Validator(schema)
    problems: list[Problem] = []
    errors = sorted(
        validator.iter_errors(values), key=lambda e: (dotted(list(e.absolute_path)), e.message)
    )
    for top in errors:
        for error in _leaf_errors(top):
            path = list(error.absolute_path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                properties = error.schema.get("properties") or {}
                patterns = list((error.schema.get("patternProperties") or {}).keys())
                import re

                known = _known_keys(error.schema)
                for key in sorted(error.instance):
                    if key in properties or any(re.search(p, key) for p in patterns):
                        continue
                    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                    if close:
                        fix = f"did you mean {dotted([*path, close[0]])}?"
                    else:
                        fix = "known keys here: " + (", ".join(known) or "none")
                    problems.append(
                        Problem(values_place(file, dotted([*path, key])), "unknown key", fix)
                    )
                continue
            if error.validator == "required" and isinstance(error.validator_value, list):
                missing = [k for k in error.validator_value if k not in (error.instance or {})]
                for key in missing:
                    problems.append(
                        Problem(
                            values_place(file, dotted([*path, key])),
                            "required key is missing",
                            "add it",
                        )
                    )
                continue
            problems.append(Problem(values_place(file, dotted(path)), error.message, _fix(error)))
    unique: list[Problem] = []
    for problem in problems:
        if problem not in unique:
            unique.append(problem)
    return unique


def _defaults_for(schema_path: Path, explicit: str | None) -> Any:
    if explicit == "none":
        return {}
    candidates = (
        [Path(explicit)]
        if explicit
        else [
            schema_path.parent / "values.yaml",
            schema_path.parent.parent / "chart" / "values.yaml",
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            loaded = load_values(candidate)
            return loaded if isinstance(loaded, dict) else {}
        if explicit:
            raise CannotRun(f"{candidate}: no such defaults file")
    return {}


def validate_files(
    files: list[str], schema_path: Path, defaults_file: str | None = None
) -> list[Problem]:
    """Problems of every file; raises CannotRun when a file or the schema cannot be read."""
    schema = load_schema(schema_path)
    defaults = _defaults_for(schema_path, defaults_file)
    problems: list[Problem] = []
    for file in files:
        try:
            values = load_values(Path(file))
        except ValueError as err:
            problems.append(
                Problem(values_place(file, ""), f"not valid YAML: {err}", "fix the YAML syntax")
            )
            continue
        if values is None:
            values = {}
        if not isinstance(values, dict):
            problems.append(
                Problem(
                    values_place(file, ""),
                    f"a values file must be a mapping, this one is a {type(values).__name__}",
                    "write `key: value` lines",
                )
            )
            continue
        problems.extend(check_instance(coalesce(defaults, values), schema, file))
    return problems


def run(args: argparse.Namespace) -> int:
    try:
        schema_path = find_schema(args.schema)
        problems = validate_files(list(args.values_files), schema_path, args.defaults)
    except CannotRun as err:
        print(f"etcd-chart validate: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    for file in args.values_files:
        print(f"{file}: valid")
    return 0
