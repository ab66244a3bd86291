"""The controllers of the sandbox: StatefulSet, Deployment and Job, and Helm's hook order.

- StatefulSet: `Parallel` creates every missing pod at once, `OrderedReady` one at a time once
  the lower ordinals are Ready; scale-down deletes from the highest ordinal (all at once with
  `Parallel`, one at a time with `OrderedReady`), and with
  `persistentVolumeClaimRetentionPolicy.whenScaled: Delete` removes the claim directories of the
  pods it scaled away. `RollingUpdate` replaces pods of an older template highest ordinal first,
  one at a time, each only when every pod is Ready, never below `partition`; `OnDelete` leaves
  them until they are deleted.
- Deployment: a changed template replaces all pods at once (like `strategy: Recreate`).
- Job: one pod at a time to completion, `backoffLimit` failures (back-off 1 s doubling to
  10 s), `activeDeadlineSeconds`.

`reconcile()` is called with the daemon's lock held and must never block.
"""

from __future__ import annotations

import copy
import random
import shutil
import string
import time
from typing import Any, Protocol

from etcd_chart.sandbox.podspec import template_hash
from etcd_chart.sandbox.runtime import BACKOFF_CAP, BACKOFF_START, Pod, tail

# Helm's install order (pkg/release/util/kind_sorter.go); other kinds come after, by name.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]  # fmt: skip

HOOK_EVENTS = (
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
)


def kind_rank(kind: str) -> int:
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def install_order_key(obj: dict[str, Any]) -> tuple[int, str, str]:
    kind = str(obj.get("kind", ""))
    return (kind_rank(kind), kind, str((obj.get("metadata") or {}).get("name", "")))


def hook_events(obj: dict[str, Any]) -> list[str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = str(annotations.get("helm.sh/hook", "") or "")
    return [event.strip() for event in raw.split(",") if event.strip()]


def hook_weight(obj: dict[str, Any]) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(str(annotations.get("helm.sh/hook-weight", "0")).strip() or 0)
    except ValueError:
        return 0


def hook_delete_policies(obj: dict[str, Any]) -> list[str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = str(annotations.get("helm.sh/hook-delete-policy", "") or "")
    return [p.strip() for p in raw.split(",") if p.strip()] or ["before-hook-creation"]


def hooks_for(event: str, hooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hooks that run on `event`, in Helm's order: weight, then kind, then name."""
    chosen = [hook for hook in hooks if event in hook_events(hook)]
    return sorted(chosen, key=lambda h: (hook_weight(h), *install_order_key(h)))


class Daemon(Protocol):
    def create_pod(
        self,
        owner: str,
        name: str,
        namespace: str,
        template: dict[str, Any],
        revision: str,
        ordinal: int | None = None,
        subdomain: str = "",
    ) -> Pod: ...
    def remove_claims(self, namespace: str, claims: list[str]) -> None: ...
    def changed(self) -> None: ...
    def event(self, message: str) -> None: ...
    def publish_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None: ...


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


class Workload:
    kind = ""

    def __init__(self, daemon: Daemon, obj: dict[str, Any]):
        self.daemon = daemon
        self.obj = obj
        self.paused = False
        self.deleted = False
        self._published: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return str(_meta(self.obj).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(_meta(self.obj).get("namespace", "") or "default")

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.obj.get("spec") or {}
        return spec

    @property
    def replicas(self) -> int:
        value = self.spec.get("replicas", 1)
        return int(value if value is not None else 1)

    @property
    def owner(self) -> str:
        return f"{self.kind}/{self.name}"

    def update(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def pods(self) -> list[Pod]:
        raise NotImplementedError

    def reconcile(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def _publish(self, status: dict[str, Any]) -> None:
        if status != self._published:
            self._published = status
            self.daemon.publish_status(self.obj, status)


class StatefulSetController(Workload):
    kind = "StatefulSet"

    def __init__(self, daemon: Daemon, obj: dict[str, Any]):
        super().__init__(daemon, obj)
        self.by_ordinal: dict[int, Pod] = {}
        self.held: set[int] = set()
        self.revisions: dict[str, dict[str, Any]] = {}
        self.current_revision = self._remember(self.template)

    def _remember(self, template: dict[str, Any]) -> str:
        revision = template_hash(template)
        self.revisions[revision] = copy.deepcopy(template)
        return revision

    @property
    def template(self) -> dict[str, Any]:
        template: dict[str, Any] = self.spec.get("template") or {}
        return template

    @property
    def update_revision(self) -> str:
        return self._remember(self.template)

    @property
    def parallel(self) -> bool:
        return self.spec.get("podManagementPolicy") == "Parallel"

    @property
    def strategy(self) -> str:
        return str((self.spec.get("updateStrategy") or {}).get("type") or "RollingUpdate")

    @property
    def partition(self) -> int:
        rolling = (self.spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        return int(rolling.get("partition") or 0)

    @property
    def claim_templates(self) -> list[str]:
        return [str(_meta(t).get("name", "")) for t in self.spec.get("volumeClaimTemplates") or []]

    def pod_name(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"

    def claims_of(self, ordinal: int) -> list[str]:
        return [f"{claim}-{self.pod_name(ordinal)}" for claim in self.claim_templates]

    def pod_template(self, revision: str, ordinal: int) -> dict[str, Any]:
        """The template with the claim volumes the controller adds, as Kubernetes does."""
        template = copy.deepcopy(self.revisions[revision])
        spec = template.setdefault("spec", {})
        volumes = [
            v for v in spec.get("volumes") or [] if v.get("name") not in self.claim_templates
        ]
        for claim in self.claim_templates:
            volumes.append(
                {
                    "name": claim,
                    "persistentVolumeClaim": {"claimName": f"{claim}-{self.pod_name(ordinal)}"},
                }
            )
        spec["volumes"] = volumes
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels["statefulset.kubernetes.io/pod-name"] = self.pod_name(ordinal)
        labels["apps.kubernetes.io/pod-index"] = str(ordinal)
        return template

    def pods(self) -> list[Pod]:
        return [self.by_ordinal[o] for o in sorted(self.by_ordinal)]

    def _create(self, ordinal: int) -> None:
        use_current = self.strategy == "RollingUpdate" and ordinal < self.partition
        revision = self.current_revision if use_current else self.update_revision
        pod = self.daemon.create_pod(
            self.owner,
            self.pod_name(ordinal),
            self.namespace,
            self.pod_template(revision, ordinal),
            revision,
            ordinal,
            str(self.spec.get("serviceName") or ""),
        )
        self.by_ordinal[ordinal] = pod

    def reconcile(self) -> None:
        replicas = self.replicas
        retention = self.spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for ordinal, pod in list(self.by_ordinal.items()):
            if pod.done:
                del self.by_ordinal[ordinal]
                if (
                    ordinal >= replicas
                    and retention.get("whenScaled") == "Delete"
                    and not self.deleted
                ):
                    self.daemon.remove_claims(self.namespace, self.claims_of(ordinal))
        if self.paused or self.deleted:
            for pod in self.by_ordinal.values():
                pod.delete()
            self._status()
            return
        excess = sorted((o for o in self.by_ordinal if o >= replicas), reverse=True)
        if excess:
            if self.parallel:
                for ordinal in excess:
                    self.by_ordinal[ordinal].delete()
            elif not any(p.deleting for p in self.by_ordinal.values()):
                self.by_ordinal[excess[0]].delete()
        for ordinal in range(replicas):
            if ordinal in self.by_ordinal or ordinal in self.held:
                continue
            if not self.parallel:
                lower = [self.by_ordinal.get(i) for i in range(ordinal)]
                if any(p is None or not p.ready for p in lower) or excess:
                    break
            self._create(ordinal)
            if not self.parallel:
                break
        update = self.update_revision
        members = [self.by_ordinal.get(o) for o in range(replicas)]
        settled = not excess and all(p is not None and p.ready and not p.deleting for p in members)
        if settled and self.strategy == "RollingUpdate":
            stale = [
                o
                for o, pod in enumerate(members)
                if o >= self.partition and pod is not None and pod.revision != update
            ]
            if stale:
                self.daemon.event(
                    f"StatefulSet {self.namespace}/{self.name}: "
                    f"rolling update of {self.pod_name(stale[-1])}"
                )
                self.by_ordinal[stale[-1]].delete()
            elif all(p is not None and p.revision == update for p in members):
                self.current_revision = update
        self._status()

    def ready(self) -> bool:
        replicas = self.replicas
        if set(self.by_ordinal) != set(range(replicas)):
            return False
        update = self.update_revision
        for ordinal, pod in self.by_ordinal.items():
            if not pod.ready or pod.deleting:
                return False
            if (
                self.strategy == "RollingUpdate"
                and ordinal >= self.partition
                and pod.revision != update
            ):
                return False
        return True

    def _status(self) -> None:
        pods = list(self.by_ordinal.values())
        update = self.update_revision
        self._publish(
            {
                "observedGeneration": _meta(self.obj).get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": sum(1 for p in pods if p.ready),
                "availableReplicas": sum(1 for p in pods if p.ready),
                "currentReplicas": sum(1 for p in pods if p.revision == self.current_revision),
                "updatedReplicas": sum(1 for p in pods if p.revision == update),
                "currentRevision": f"{self.name}-{self.current_revision}",
                "updateRevision": f"{self.name}-{update}",
            }
        )


def _suffix(length: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))  # noqa: S311


class DeploymentController(Workload):
    kind = "Deployment"

    def __init__(self, daemon: Daemon, obj: dict[str, Any]):
        super().__init__(daemon, obj)
        self.active: list[Pod] = []

    def pods(self) -> list[Pod]:
        return list(self.active)

    def reconcile(self) -> None:
        self.active = [p for p in self.active if not p.done]
        template = self.spec.get("template") or {}
        revision = template_hash(template)
        if self.paused or self.deleted:
            for pod in self.active:
                pod.delete()
            return
        for pod in self.active:
            if pod.revision != revision:
                pod.delete()
        if any(p.deleting for p in self.active):
            return
        while len(self.active) < self.replicas:
            name = f"{self.name}-{revision[:10]}-{_suffix()}"
            self.active.append(
                self.daemon.create_pod(
                    self.owner, name, self.namespace, copy.deepcopy(template), revision
                )
            )
        for pod in self.active[self.replicas :]:
            pod.delete()
        ready = sum(1 for p in self.active if p.ready)
        self._publish(
            {"replicas": len(self.active), "readyReplicas": ready, "availableReplicas": ready}
        )

    def ready(self) -> bool:
        revision = template_hash(self.spec.get("template") or {})
        live = [p for p in self.active if not p.deleting]
        return len(live) == self.replicas and all(p.ready and p.revision == revision for p in live)


class JobController(Workload):
    kind = "Job"

    def __init__(self, daemon: Daemon, obj: dict[str, Any]):
        super().__init__(daemon, obj)
        self.pod: Pod | None = None
        self.failures = 0
        self.succeeded = False
        self.failed = ""
        self.started = time.monotonic()
        self.next_try = 0.0
        self.backoff = BACKOFF_START
        self.last_log = ""

    def pods(self) -> list[Pod]:
        return [self.pod] if self.pod is not None else []

    @property
    def finished(self) -> bool:
        return self.succeeded or bool(self.failed)

    def reconcile(self) -> None:
        if self.paused or self.deleted:
            if self.pod is not None:
                self.pod.delete()
                if self.pod.done:
                    self.pod = None
            return
        if self.finished:
            return
        now = time.monotonic()
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline is not None and now - self.started > float(deadline):
            self.failed = (
                f"DeadlineExceeded: the Job ran longer than activeDeadlineSeconds={deadline}"
            )
            if self.pod is not None:
                self.last_log = self._log_tail(self.pod)
                self.pod.delete()
            self.daemon.changed()
            return
        if self.pod is not None and self.pod.done:
            pod = self.pod
            self.pod = None
            if pod.phase == "Succeeded":
                self.succeeded = True
            else:
                self.failures += 1
                self.last_log = self._log_tail(pod)
                limit = int(self.spec.get("backoffLimit", 6))
                if self.failures > limit:
                    self.failed = (
                        f"BackoffLimitExceeded: {self.failures} failed pod(s), backoffLimit={limit}"
                    )
                self.next_try = now + self.backoff
                self.backoff = min(self.backoff * 2, BACKOFF_CAP)
            self.daemon.changed()
            return
        if self.pod is None and now >= self.next_try:
            template = copy.deepcopy(self.spec.get("template") or {})
            # OnFailure restarts count against backoffLimit like failed pods: one pod per try.
            template.setdefault("spec", {})["restartPolicy"] = "Never"
            self.pod = self.daemon.create_pod(
                self.owner,
                f"{self.name}-{_suffix()}",
                self.namespace,
                template,
                template_hash(template),
            )

    @staticmethod
    def _log_tail(pod: Pod) -> str:
        for container in pod.containers.values():
            if container.exit_code not in (0, None) or container.reason not in ("Completed", ""):
                return f"container {container.spec.name}:\n{tail(container.log)}"
        last = list(pod.containers.values())
        if last:
            return f"container {last[-1].spec.name}:\n{tail(last[-1].log)}"
        return pod.error

    def ready(self) -> bool:
        return self.finished


def remove_tree(path: Any) -> None:
    shutil.rmtree(path, ignore_errors=True)
