"""`etcd-chart validate VALUES_FILE...`: check values files against the chart's schema and rules.

Each file is merged over the chart's defaults (`values.yaml` beside the schema), as Helm does
before it validates, and checked against the chart's `values.schema.json` (the chart bundled with
the package, else `chart/` and `schemas/` of a checkout; `--schema` picks another) as JSON Schema
draft-07. A file the schema accepts then goes through the chart's cross-field rules, run by the
chart itself with `helm template` (chart_rules.py; `--schema-only` skips them). Every problem of
every file is reported in one run, one line each: `file: dotted.key: message (fix)`; an unknown key
names the closest known key. Exit 0 when every file is valid, 1 when any is not, 2 when a file,
the schema, the chart or helm cannot be found or read.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcd_chart import bundled
from etcd_chart.report import Problem, values_place

SCHEMA_CANDIDATES = (
    *(chart / "values.schema.json" for chart in bundled.chart_candidates()),
    bundled.CHECKOUT_CHART.parent / "schemas" / "values.schema.json",
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
    parser.add_argument(
        "--chart",
        help="chart whose cross-field rules run (default: the chart bundled with the package)",
    )
    parser.add_argument(
        "--release-name",
        default="etcd",
        help="release name the rules see (the full name must fit 47 characters; default etcd)",
    )
    parser.add_argument(
        "--schema-only",
        action="store_true",
        help="check the schema alone, without the chart's cross-field rules (needs no helm)",
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


@dataclass(frozen=True)
class Rules:
    """Run the chart's cross-field rules: `helm template RELEASE CHART -f FILE` with this helm."""

    chart: Path
    helm: str
    release: str = "etcd"


def find_rules(chart: str | None, release: str) -> Rules:
    """The chart and helm to run the rules with; raises CannotRun naming what is missing."""
    from etcd_chart.helm import ToolMissing, find_helm

    chart_path = Path(chart) if chart else bundled.chart_dir()
    if chart_path is None or not (chart_path / "Chart.yaml").is_file():
        where = chart_path or " or ".join(str(c) for c in bundled.chart_candidates())
        raise CannotRun(f"no chart at {where} to run the cross-field rules (pass --chart)")
    try:
        helm = find_helm()
    except ToolMissing as err:
        raise CannotRun(
            "helm (3 or 4) is needed on PATH to run the chart's cross-field rules; install it, "
            "or pass --schema-only to check the schema alone"
        ) from err
    return Rules(chart_path, helm, release)


def validate_files(
    files: list[str],
    schema_path: Path,
    defaults_file: str | None = None,
    rules: Rules | None = None,
) -> list[Problem]:
    """Problems of every file; raises CannotRun when a file or the schema cannot be read.

    With `rules`, a file the schema accepts also goes through the chart's cross-field rules.
    """
    from etcd_chart import chart_rules

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
        schema_problems = check_instance(coalesce(defaults, values), schema, file)
        problems.extend(schema_problems)
        if rules is not None and not schema_problems:
            try:
                problems.extend(
                    chart_rules.check_file(file, rules.chart, rules.helm, rules.release)
                )
            except chart_rules.RulesUnavailable as err:
                raise CannotRun(str(err)) from err
    return problems


def run(args: argparse.Namespace) -> int:
    try:
        schema_path = find_schema(args.schema)
        rules = None if args.schema_only else find_rules(args.chart, args.release_name)
        problems = validate_files(list(args.values_files), schema_path, args.defaults, rules)
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
