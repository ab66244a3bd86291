"""When is an etcd member set done? Every pod Ready is not enough: a new member is Ready while it
is still a learner (etcd answers /readyz), and a learner refuses most requests (`rpc not supported
for learner`). `up`, `upgrade` and `wait` report done only when the member list, read with etcdctl
inside a member pod, has one started voting member per pod and no learner.
"""

from __future__ import annotations

import json
from collections.abc import Callable

# etcdctl ARGS in a member pod -> (exit code, stdout, stderr)
RunEtcdctl = Callable[[list[str]], tuple[int, str, str]]


def problem(run: RunEtcdctl, pods: list[str]) -> str | None:
    """What keeps the member set from being done, or None when every pod is a started voter."""
    code, out, err = run(["member", "list", "-w", "json"])
    if code != 0:
        return f"etcdctl member list failed: {(err or out).strip()}"
    try:
        members = json.loads(out).get("members") or []
    except (ValueError, AttributeError):
        return f"etcdctl member list printed no JSON: {out.strip()[:200]}"
    names = [str(m.get("name") or "") for m in members]
    problems = []
    learners = sorted(
        name or f"{int(m.get('ID', 0)):x}"
        for m, name in zip(members, names, strict=True)
        if m.get("isLearner")
    )
    if learners:
        problems.append(f"still a learner: {', '.join(learners)}")
    unstarted = sum(1 for name in names if not name)
    if unstarted:
        problems.append(f"{unstarted} member(s) added but not started")
    absent = sorted(set(pods) - set(names))
    if absent:
        problems.append(f"not a member yet: {', '.join(absent)}")
    extra = sorted(set(names) - set(pods) - {""})
    if extra:
        problems.append(f"members without a pod: {', '.join(extra)}")
    return "; ".join(problems) or None
