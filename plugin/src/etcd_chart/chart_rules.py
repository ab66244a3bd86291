"""The chart's cross-field value rules, run by the chart itself.

The rules are defined once, in the chart's `etcd.validateValues` helper
(chart/templates/_helpers.tpl). `etcd-chart validate` does not copy them: it renders the chart
(the one bundled with the package, or `--chart`) with `helm template` and turns the helper's
`value errors:` list into problems, so the two can never disagree. Each line of that list reads
`dotted.key: what is wrong. How to fix it.`
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from etcd_chart.report import Problem, values_place

ERRORS_HEADER = "value errors:"
_FIX_START = re.compile(r"\.\s+(?=[A-Z])")


class RulesUnavailable(Exception):
    """helm or the chart is missing; the message says what to install or pass."""


def parse_value_errors(stderr: str) -> list[tuple[str, str, str]]:
    """(key, message, fix) for each line of the helper's `value errors:` list, in order."""
    lines = stderr.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == ERRORS_HEADER)
    except StopIteration:
        return []
    found: list[tuple[str, str, str]] = []
    for line in lines[start + 1 :]:
        if not line.startswith("  - "):
            break
        key, _, text = line[4:].partition(": ")
        parts = _FIX_START.split(text.strip(), maxsplit=1)
        message = parts[0].rstrip(".")
        fix = parts[1].rstrip(".") if len(parts) > 1 else ""
        fix = fix[:1].lower() + fix[1:]
        found.append((key, message, fix))
    return found


def check_file(
    file: str, chart: Path, helm: str, release: str = "etcd", timeout: float = 120.0
) -> list[Problem]:
    """Problems the chart's own rules find in `file` (rendered over the chart's defaults)."""
    command = [helm, "template", release, str(chart), "--namespace", "default", "-f", file]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RulesUnavailable(f"cannot run {helm}: {err}") from err
    if result.returncode == 0:
        return []
    errors = parse_value_errors(result.stderr)
    if errors:
        return [Problem(values_place(file, key), message, fix) for key, message, fix in errors]
    first = next(
        (line.strip() for line in result.stderr.splitlines() if line.strip()), "no message"
    )
    return [
        Problem(
            values_place(file, ""),
            f"the chart does not render with these values: {first}",
            f"run `helm template {release} {chart} -f {file}` to see the whole error",
        )
    ]
