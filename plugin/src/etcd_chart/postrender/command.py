"""`etcd-chart post-render`: rendered manifests on stdin, the filled-in stream on stdout.

Exit 0 with the stream on stdout; 1 when the input is invalid (every problem on stderr, nothing on
stdout); 2 when it could not run (an unreadable kubeconfig, an unreachable cluster, a kubeconfig
with several contexts and none named).

Helm passes neither its `--kube-context` nor its `--kubeconfig` to a post-renderer: name them with
`--post-renderer-args --kube-context=CONTEXT` (Helm 3 and 4). Every live read says which server
and context it read, on stderr and the ways below.

Helm 4 discards a post-renderer plugin's stderr, so the same messages also go to the controlling
terminal (`/dev/tty`, unless stderr is that terminal already or `ETCD_CHART_NO_TTY=1`) and to the
file named by `ETCD_CHART_ERROR_FILE`.

Environment: `ETCD_CHART_CLUSTER_DOMAIN`, `ETCD_CHART_INITIAL_CLUSTER_STATE`,
`ETCD_CHART_OFFLINE=1`, `ETCD_CHART_NO_TTY=1`, `ETCD_CHART_ERROR_FILE`, `KUBECONFIG`,
`HELM_NAMESPACE`.
"""

from __future__ import annotations

import argparse
import os
import sys

HINT = (
    "hint: run `helm template RELEASE CHART [your flags] | etcd-chart post-render` "
    "to see the same check"
)
PREFIX = "etcd-chart post-render"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-domain",
        default=None,
        help="Kubernetes cluster domain for built peer URLs (env ETCD_CHART_CLUSTER_DOMAIN, "
        "default cluster.local); the chart's own advertise URL already carries it",
    )
    parser.add_argument(
        "--initial-cluster-state",
        choices=["new", "existing"],
        default=None,
        help="force initial-cluster-state for every member set "
        "(env ETCD_CHART_INITIAL_CLUSTER_STATE)",
    )
    parser.add_argument(
        "--namespace",
        default=None,
        help="namespace of objects that name none (env HELM_NAMESPACE, default: default)",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig of the cluster to check against"
    )
    parser.add_argument(
        "--kube-context",
        default=None,
        help="context of the kubeconfig to read (required when it has several: the one Helm "
        "installs into; pass it with helm's --post-renderer-args)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never contact a cluster (env ETCD_CHART_OFFLINE=1)",
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


_error_file_written = False


def emit(text: str) -> None:
    """Text to stderr, to the terminal (Helm 4 hides stderr) and to an error file.

    The error file is rewritten by a run's first message and appended to by the next ones.
    """
    global _error_file_written
    sys.stderr.write(text)
    sys.stderr.flush()
    if not _truthy(os.environ.get("ETCD_CHART_NO_TTY")) and not _stderr_is_tty():
        try:
            with open("/dev/tty", "w") as tty:
                tty.write(text)
        except OSError:
            pass  # no controlling terminal (CI, Argo CD): stderr and the file are the ways
    error_file = os.environ.get("ETCD_CHART_ERROR_FILE")
    if error_file:
        try:
            with open(error_file, "a" if _error_file_written else "w") as handle:
                handle.write(text)
            _error_file_written = True
        except OSError as err:
            sys.stderr.write(f"{PREFIX}: cannot write ETCD_CHART_ERROR_FILE {error_file}: {err}\n")


def run_by_helm() -> bool:
    """Helm runs us (a Helm 4 plugin, or Helm 3's --post-renderer executable, which execs
    Python), so the hint to run the check by hand is news; run by hand, it would repeat itself."""
    if os.environ.get("HELM_PLUGIN_NAME"):
        return True
    try:
        with open(f"/proc/{os.getppid()}/comm") as handle:
            return handle.read().strip().startswith("helm")
    except OSError:
        return False


def _stderr_is_tty() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    from etcd_chart.postrender import cluster as cluster_module
    from etcd_chart.postrender.core import Options, post_render

    state_value = args.initial_cluster_state or os.environ.get("ETCD_CHART_INITIAL_CLUSTER_STATE")
    if state_value is not None and state_value not in ("new", "existing"):
        emit(
            f"{PREFIX}: ETCD_CHART_INITIAL_CLUSTER_STATE is {state_value!r} (use new or existing)\n"
        )
        return 2
    options = Options(
        cluster_domain=args.cluster_domain
        or os.environ.get("ETCD_CHART_CLUSTER_DOMAIN")
        or "cluster.local",
        initial_cluster_state=state_value or None,
        namespace=args.namespace or os.environ.get("HELM_NAMESPACE") or "default",
    )
    try:
        text = sys.stdin.read()
    except (OSError, UnicodeDecodeError) as err:
        emit(f"{PREFIX}: cannot read stdin: {err}\n")
        return 2
    offline = args.offline or _truthy(os.environ.get("ETCD_CHART_OFFLINE"))
    live = None
    notice = ""
    try:
        target = None if offline else cluster_module.resolve(args.kubeconfig, args.kube_context)
        if target is not None:
            live = cluster_module.Cluster(target)
        outcome = post_render(text, options, live)
        if live is not None:
            notice = f"{PREFIX}: read the cluster at {live.describe()}\n"
            notice += "".join(f"{PREFIX}: {note}\n" for note in outcome.notes)
    except cluster_module.ClusterUnavailable as err:
        emit(f"{PREFIX}: {err} ({err.fix})\n")
        return 2
    finally:
        if live is not None:
            live.close()
    if not outcome.ok:
        emit(notice + outcome.report.text() + (HINT + "\n" if run_by_helm() else ""))
        return 1
    if notice:
        emit(notice)
    sys.stdout.write(outcome.output)
    sys.stdout.flush()
    return 0
