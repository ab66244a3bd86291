"""Problems found in manifests or values files, collected and then reported together.

One stable format for every message: `place: message (fix)`, where the place is
`<template>: <Kind>/<name>: <field path>` for a manifest (the template from Helm's `# Source:`
comment, or Helm 4's `postrenderer.helm.sh/postrender-filename` annotation) and
`<file>: <dotted.key>` for a values file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is and how to fix it."""

    place: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.place}: {self.message}" if self.place else self.message
        return f"{text} ({self.fix})" if self.fix else text


def manifest_place(source: str, kind: str, name: str, path: str = "") -> str:
    """`template: Kind/name: field.path`, leaving out the parts that are unknown."""
    parts = [source] if source else []
    if kind or name:
        parts.append(f"{kind or '?'}/{name or '?'}")
    if path:
        parts.append(path)
    return ": ".join(parts)


def values_place(file: str, dotted_key: str) -> str:
    """`file: dotted.key` (the key `(root)` when the problem is the whole document)."""
    return f"{file}: {dotted_key or '(root)'}"


@dataclass
class Report:
    """Problems in the order they were found; a problem found twice is kept once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, place: str, message: str, fix: str = "") -> None:
        problem = Problem(place, message, fix)
        if problem not in self.problems:
            self.problems.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if problem not in self.problems:
                self.problems.append(problem)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def lines(self) -> list[str]:
        return [str(problem) for problem in self.problems]

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines())
