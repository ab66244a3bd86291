"""One post-render run: stream in, stream out (or every problem found). Never prints or exits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from etcd_chart.postrender import (
    checks,
    fieldtypes,
    issuers,
    peers,
    preflight,
    state,
    stream,
    versions,
)
from etcd_chart.postrender.members import (
    STATE_ANNOTATION,
    Lookup,
    MemberSet,
    member_set,
    stream_lookup,
)
from etcd_chart.report import Report
from etcd_chart.yamlio import Document

NOT_ETCD_FIX = (
    "use this post-renderer only for etcd releases (the etcd chart, or an etcd StatefulSet "
    "whose container runs etcd with --initial-cluster); run Helm without --post-renderer otherwise"
)


class LiveCluster(Protocol):
    """Read access to live objects; `get` returns None for an object that does not exist."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


@dataclass
class Options:
    cluster_domain: str = "cluster.local"
    initial_cluster_state: str | None = None
    namespace: str = "default"
    # The moment certificates in live Secrets are checked against; None: the current time.
    now: datetime | None = None


@dataclass
class Outcome:
    output: str = ""
    report: Report = field(default_factory=Report)
    members: list[MemberSet] = field(default_factory=list)
    # What was decided for each member set, for tests and summaries: name -> (state, reason).
    decisions: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    # What the live checks could not look at, one line each (said, not an error).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.report


def _live_lookup(cluster: LiveCluster) -> Lookup:
    def lookup(kind: str, namespace: str, name: str) -> Document | None:
        body = cluster.get(kind, namespace, name)
        if body is None:
            return None
        return Document(body=body, source=f"live {kind}/{name}")

    return lookup


def post_render(text: str, options: Options, cluster: LiveCluster | None = None) -> Outcome:
    """Transform and check the stream `text`. With `cluster`, decide state from it and preflight.

    `cluster.get` may raise (the caller maps that to "could not run").
    """
    outcome = Outcome()
    report = outcome.report
    documents = stream.parse(text, report)
    if report:
        return outcome
    if not documents:
        report.add(
            "stdin",
            "the input stream is empty: there are no manifests to post-render",
            "pipe a rendered release into it, e.g. `helm template etcd ./chart | etcd-chart "
            "post-render`; Helm passes no manifests when every template renders empty",
        )
        return outcome
    namespace = options.namespace
    lookup = stream_lookup(documents, namespace)
    members: list[MemberSet] = []
    for document in documents:
        found = member_set(document, namespace, lookup)
        if found is not None:
            members.append(found)
    outcome.members = members
    if not members:
        kinds = sorted({f"{d.kind}" for d in documents})
        report.add(
            "stdin",
            f"no etcd member set among {len(documents)} objects ({', '.join(kinds)}): this "
            "post-renderer is for etcd releases",
            NOT_ETCD_FIX,
        )
        return outcome

    fieldtypes.check(documents, members, report)
    if report:  # every later step reads these fields: stop before one is used
        return outcome
    checks.check_duplicates(documents, namespace, report)
    for member in members:
        checks.check_settings(member, report)
        checks.check_member_count(member, report)
        checks.check_pdbs(member, documents, namespace, report)
        checks.check_services(member, lookup, report)
        checks.check_ports(member, report)
        checks.check_certificates(member, documents, namespace, options.cluster_domain, report)

    live_lookup = _live_lookup(cluster) if cluster is not None else None
    changed: set[int] = set()
    for member in members:
        settings = member.settings
        annotation = member.annotations.get(STATE_ANNOTATION)
        if annotation is not None and annotation not in state.STATES:
            report.add(
                checks.place(member.statefulset, f"metadata.annotations[{STATE_ANNOTATION}]"),
                f"is {annotation!r}",
                "use new or existing",
            )
            continue
        live_facts = None
        if live_lookup is not None:
            live_doc = live_lookup("StatefulSet", member.namespace, member.name)
            record = live_lookup("ConfigMap", member.namespace, state.record_name(member.name))
            live_facts = state.LiveFacts(live_doc is not None, record is not None)
            if live_doc is not None:
                live_member = member_set(live_doc, member.namespace, live_lookup)
                if live_member is not None:
                    preflight.check(member, live_member, report)
                    versions.check(member, live_member, live_lookup, report, outcome.notes)
            # Imported here: it loads `cryptography`, which offline runs never need.
            from etcd_chart.postrender import secrets

            secrets.check(
                member,
                documents,
                namespace,
                live_lookup,
                options.cluster_domain,
                report,
                options.now,
            )
        if settings is None:
            continue
        current = settings.get("initial-cluster-state")
        decision = state.decide(
            annotation, options.initial_cluster_state, live_facts, current, member.name
        )
        outcome.decisions[member.name] = (decision.state, decision.reason)
        if decision.refused:
            report.add(
                checks.place(member.statefulset),
                decision.refused,
                "remove the explicit state to let the post-renderer choose existing, or delete "
                f"the old cluster's StatefulSet and ConfigMap {state.record_name(member.name)} "
                "first if a new, empty cluster is really meant",
            )
            continue
        touched = False
        if member.replicas > 0 and (
            settings.get("initial-cluster") is not None or peers.url_form(member)
        ):
            touched |= settings.set(
                "initial-cluster", peers.initial_cluster(member, options.cluster_domain)
            )
        if decision.state is not None and decision.state != current:
            touched |= settings.set("initial-cluster-state", decision.state)
        if touched:
            settings.finish()
            changed.update(document.index for document in settings.documents())
    if cluster is not None:
        issuers.check(documents, namespace, cluster, report, outcome.notes)
    if report:
        return outcome
    outcome.output = stream.render(documents, changed)
    return outcome
