"""The status a kubelet reports for a pod it runs, computed from the sandbox's runtime pod:
phase, conditions, container statuses (state, last state, restarts), pod and host IP."""

from __future__ import annotations

import time
from typing import Any

from etcd_chart.sandbox.runtime import Container, Pod


def rfc3339(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _wall(monotonic: float) -> float:
    return time.time() - (time.monotonic() - monotonic)


def container_status(container: Container, pod: Pod, image: str) -> dict[str, Any]:
    running = container.running
    started_at = rfc3339(_wall(container.started_at)) if container.started_at else None
    restartable = (
        container.spec.role == "sidecar"
        or pod.restart_policy == "Always"
        or (pod.restart_policy == "OnFailure" and container.exit_code not in (None, 0))
    )
    terminated = None
    if container.exit_code is not None:
        terminated = {
            "exitCode": container.exit_code,
            "reason": container.reason or ("Completed" if container.exit_code == 0 else "Error"),
            "startedAt": started_at,
            "finishedAt": rfc3339(time.time()),
        }
    last: dict[str, Any] = {}
    if running and container.proc is not None:
        state: dict[str, Any] = {"running": {"startedAt": started_at}}
    elif terminated is not None and (container.finished or not restartable or pod.done):
        state = {"terminated": terminated}
    elif terminated is not None:
        state = {"waiting": {"reason": "CrashLoopBackOff"}}
        last = {"terminated": terminated}
    else:
        reason = "PodInitializing" if container.spec.role == "main" else "ContainerCreating"
        state = {"waiting": {"reason": reason}}
    status: dict[str, Any] = {
        "name": container.spec.name,
        "image": image,
        "imageID": "",
        "ready": bool(container.ready and running),
        "started": bool(container.started and running),
        "restartCount": container.restarts,
        "state": state,
        "lastState": last,
    }
    if container.proc is not None:
        status["containerID"] = f"sandbox://{container.proc.pid}"
    return status


def _condition(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if reason and not ok:
        condition["reason"] = reason
    return condition


def pod_status(pod: Pod, obj: dict[str, Any], host_ip: str, held: bool = False) -> dict[str, Any]:
    """The pod's status (without transition times: `with_transition_times` adds them)."""
    spec = obj.get("spec") or {}
    images = {
        str(c.get("name")): str(c.get("image", ""))
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }
    with pod._lock:
        containers = list(pod.containers.values())
        phase = pod.phase
        ready = pod.ready and not held
        prepared = bool(containers)
        inits = [c for c in containers if c.spec.role != "main"]
        mains = [c for c in containers if c.spec.role == "main"]
        init_statuses = [container_status(c, pod, images.get(c.spec.name, "")) for c in inits]
        main_statuses = [container_status(c, pod, images.get(c.spec.name, "")) for c in mains]
    initialized = (
        prepared
        and all(c.finished if c.spec.role == "init" else c.running for c in inits)
        and phase != "Pending"
    )
    if phase == "Pending" and pod.error:
        message = pod.error
    else:
        message = "stopped by `etcd-chart sandbox stop`" if held else ""
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod.address,
        "podIPs": [{"ip": pod.address}],
        "conditions": [
            _condition("PodReadyToStartContainers", prepared, "VolumesNotReady"),
            _condition(
                "Initialized",
                initialized or phase in ("Running", "Succeeded"),
                "ContainersNotInitialized",
            ),
            _condition("ContainersReady", ready, "ContainersNotReady"),
            _condition("Ready", ready, "ContainersNotReady"),
            *[
                c
                for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ],
        ],
        "containerStatuses": main_statuses,
        "initContainerStatuses": init_statuses,
    }
    if message:
        status["message"] = message
    return status


def with_transition_times(
    status: dict[str, Any], previous: dict[str, Any], start_time: str
) -> dict[str, Any]:
    """Keep a condition's lastTransitionTime while its status stays the same."""
    before = {c["type"]: c for c in previous.get("conditions") or []}
    now = rfc3339(time.time())
    for condition in status["conditions"]:
        if "lastTransitionTime" in condition:
            continue
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"]:
            condition["lastTransitionTime"] = old.get("lastTransitionTime") or now
        else:
            condition["lastTransitionTime"] = now
    status["startTime"] = start_time
    return status


def comparable(status: dict[str, Any]) -> Any:
    """The status without the fields that change on every computation (finish times)."""

    def strip(container: dict[str, Any]) -> dict[str, Any]:
        out = dict(container)
        for field in ("state", "lastState"):
            value = out.get(field) or {}
            if "terminated" in value:
                out[field] = {
                    "terminated": {
                        k: v for k, v in value["terminated"].items() if k != "finishedAt"
                    }
                }
        return out

    return {
        **{
            k: v
            for k, v in status.items()
            if k not in ("containerStatuses", "initContainerStatuses", "conditions", "startTime")
        },
        "conditions": [(c["type"], c["status"]) for c in status["conditions"]],
        "containerStatuses": [strip(c) for c in status["containerStatuses"]],
        "initContainerStatuses": [strip(c) for c in status["initContainerStatuses"]],
    }
