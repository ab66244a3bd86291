"""The agent's exceptions: bad input (exit 1), a condition to wait out, SIGTERM."""

from __future__ import annotations


class AgentError(Exception):
    """Input the agent cannot work with (template, auth.json, environment): exit 1."""


class Retry(Exception):
    """A condition that may clear by itself: wait and try again."""


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException so that no retry loop swallows it)."""
