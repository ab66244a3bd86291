"""Changes a live cluster cannot take, found by comparing a member set with what is running.

Kubernetes refuses changes to a StatefulSet's volumeClaimTemplates, serviceName, selector and
podManagementPolicy; etcd cannot switch its peers between http and https, change the cluster
token, nor move its peer URLs (peer port, cluster domain) while the cluster runs; and removing
more than one member at once so that fewer than a quorum of the old membership remain risks the
cluster (the scale-down hook removes one member at a time, so the chart's own member set,
annotated `etcd-chart/scale-down: hook`, may go down further at once; any other set must go
down in steps).
"""

from __future__ import annotations

from typing import Any

from etcd_chart.postrender import peers
from etcd_chart.postrender.checks import place, quorum
from etcd_chart.postrender.members import SCALE_DOWN_ANNOTATION, MemberSet
from etcd_chart.report import Report

RECREATE_FIX = (
    "keep the live value; to change it, delete the StatefulSet with `kubectl delete statefulset "
    "{name} --cascade=orphan` (pods and volumes stay) and upgrade again"
)


def _claim_templates(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of volumeClaimTemplates a user writes, without what the API server adds."""
    result = []
    for template in spec.get("volumeClaimTemplates") or []:
        if not isinstance(template, dict):
            continue
        claim = template.get("spec") or {}
        resources = claim.get("resources") or {}
        result.append(
            {
                "name": (template.get("metadata") or {}).get("name"),
                "accessModes": sorted(claim.get("accessModes") or []),
                "storage": str((resources.get("requests") or {}).get("storage", "")),
                "storageClassName": claim.get("storageClassName"),
                "volumeMode": claim.get("volumeMode") or "Filesystem",
                "selector": claim.get("selector"),
            }
        )
    return result


def _describe_claims(claims: list[dict[str, Any]]) -> str:
    parts = []
    for claim in claims:
        text = f"{claim['name']} {claim['storage'] or '?'} {','.join(claim['accessModes'])}"
        if claim["storageClassName"] is not None:
            text += f" class {claim['storageClassName']}"
        parts.append(text)
    return "; ".join(parts) or "none"


def _selector(spec: dict[str, Any]) -> Any:
    selector = spec.get("selector") or {}
    return {
        "matchLabels": dict(selector.get("matchLabels") or {}),
        "matchExpressions": list(selector.get("matchExpressions") or []),
    }


PEER_URL_FIX = (
    "keep the live peer port and cluster domain (chart values ports.peer and clusterDomain);"
    " to move a running cluster, update each member's peer URL in place (`etcdctl member update"
    " <ID> --peer-urls=<new URL>`) while it listens on both, or restore an `etcdctl snapshot"
    " save` into a new release"
)


def _check_peer_url(member: MemberSet, live: MemberSet, same_scheme: bool, report: Report) -> None:
    """Host or port of the first pod's advertised peer URL (a scheme flip is reported apart)."""
    if member.settings is None or not same_scheme:
        return
    pod = member.pod_names(1)[0]
    old_urls, new_urls = (
        peers.advertised_peer_urls(live, pod),
        peers.advertised_peer_urls(member, pod),
    )
    if old_urls and new_urls and old_urls != new_urls:
        report.add(
            place(
                member.settings.documents()[0],
                member.settings.path("initial-advertise-peer-urls"),
            ),
            f"changes the peer URL of {pod} from {','.join(old_urls)} to {','.join(new_urls)}"
            " on a running cluster; a member's peer URL is part of the membership, so members"
            " restarted under the new one are stranded",
            PEER_URL_FIX,
        )


def check(member: MemberSet, live: MemberSet, report: Report) -> None:
    """Problems with applying `member` over the running `live` member set."""
    name = member.name
    new_spec, old_spec = member.spec, live.spec
    document = member.statefulset
    fix = RECREATE_FIX.format(name=name)
    new_claims, old_claims = _claim_templates(new_spec), _claim_templates(old_spec)
    if new_claims != old_claims:
        report.add(
            place(document, "spec.volumeClaimTemplates"),
            f"changes the volume claims from ({_describe_claims(old_claims)}) to "
            f"({_describe_claims(new_claims)}); Kubernetes forbids changing volumeClaimTemplates",
            fix + "; to grow a volume, resize each PersistentVolumeClaim",
        )
    for field in ("serviceName", "podManagementPolicy"):
        old_value = old_spec.get(field) or (
            "OrderedReady" if field == "podManagementPolicy" else ""
        )
        new_value = new_spec.get(field) or (
            "OrderedReady" if field == "podManagementPolicy" else ""
        )
        if old_value != new_value:
            report.add(
                place(document, f"spec.{field}"),
                f"changes from {old_value!r} to {new_value!r}; Kubernetes forbids changing it",
                fix,
            )
    if _selector(new_spec) != _selector(old_spec):
        report.add(
            place(document, "spec.selector"),
            f"changes from {_selector(old_spec)['matchLabels']} to "
            f"{_selector(new_spec)['matchLabels']}; Kubernetes forbids changing the selector",
            fix,
        )
    if member.settings is not None and live.settings is not None:
        old_scheme, new_scheme = peers.peer_scheme(live), peers.peer_scheme(member)
        if old_scheme != new_scheme:
            report.add(
                place(
                    member.settings.documents()[0],
                    member.settings.path("initial-advertise-peer-urls"),
                ),
                f"peer traffic changes from {old_scheme} to {new_scheme} on a running cluster; "
                "members cannot switch their peer URLs' scheme in place",
                "keep the live scheme; to change it, update each member's peer URL one at a "
                "time with `etcdctl member update` while it serves both, then upgrade",
            )
        old_token = live.settings.get("initial-cluster-token")
        new_token = member.settings.get("initial-cluster-token")
        if old_token and new_token and old_token != new_token:
            report.add(
                place(
                    member.settings.documents()[0], member.settings.path("initial-cluster-token")
                ),
                f"changes the cluster token from {old_token!r} to {new_token!r} on a running "
                "cluster; members that join with the new token cannot join the old cluster",
                f"keep {old_token!r}",
            )
        _check_peer_url(member, live, old_scheme == new_scheme, report)
    old_count, new_count = live.replicas, member.replicas
    removed_by_hook = member.annotations.get(SCALE_DOWN_ANNOTATION) == "hook"
    if old_count - new_count > 1 and new_count < quorum(old_count) and not removed_by_hook:
        report.add(
            place(document, "spec.replicas"),
            f"scales from {old_count} to {new_count} members at once, below the quorum of the "
            f"running cluster ({quorum(old_count)}), and nothing removes the members first",
            f"scale down in steps that keep a quorum: first to {quorum(old_count)}, then further; "
            f"or let a hook remove them one at a time and annotate the StatefulSet "
            f'{SCALE_DOWN_ANNOTATION}: "hook" (the chart does with scaleDown.enabled)',
        )
