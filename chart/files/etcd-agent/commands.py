"""The etcd member agent: how a member starts, learner promotion, scale-down.

Commands (docs/architecture.md, "The member pod" and "Scale-down hook"):

  prepare                   init container: decide how this member starts (DESIGN.md part 3,
                            cases 1-4) and write the etcd configuration file
  watch [--once]            sidecar: promote this member while it is a learner, write the cluster
                            record once the cluster has formed (again whenever it is deleted),
                            apply auth.json, then check the record every --interval; with
                            --rejoin-after, delete this pod when its member was removed while the
                            StatefulSet still wants it (prepare then joins again)
  scale-down --replicas N   pre-upgrade/pre-rollback hook: remove the members whose ordinal is
                            >= N, highest first, one at a time, only while the cluster is healthy;
                            with no member answering, refuse only a real scale-down (the live
                            StatefulSet above N)
  backup --snapshot FILE --name F --keep N [--directory DIR] [--s3]
                            the backup Job's last step: name the checked snapshot
                            F-<UTC time>-r<revision>.db, store it in DIR and/or the bucket of the
                            ETCD_AGENT_S3_* settings, keep the newest N of F's snapshots there
  restore-fetch --source pvc|s3 [--pvc-file F] [--s3-key K]
                            init container before `etcdutl snapshot restore`: stage the release's
                            snapshot where this member would bootstrap `new` (no data, no cluster
                            record), else an empty one (restore.py)
  defrag --replicas N       CronJob: defragment the members whose database is fragmented above
                            --threshold-percent, one at a time, followers first and the leader
                            last, only while every member is healthy; then disarm a NOSPACE
                            alarm once every database is below the quota

Python standard library only (it runs in a stock Python image): urllib and ssl to etcd's JSON
gateway and to the Kubernetes API (one ConfigMap, the cluster record). Every decision is one line
on stderr saying what the agent saw and what it did; passwords are never logged.
Exit codes: 0 done; 1 invalid input, or scale-down or defrag refused, stopped or gave up;
2 prepare or watch --once gave up at --timeout; SIGTERM ends watch with 0, the others with 143.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Mapping, Sequence

from backup import run_backup
from defrag import run_defrag
from defrag_decision import Policy
from errors import AgentError, Terminated
from prepare import DEFAULT_LEARNER_WAIT, run_prepare
from restore import run_restore_fetch
from runtime import Log, raise_terminated
from scale_down import run_scale_down
from settings import Settings
from watch import run_watch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etcd-agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="decide how this member starts, write config")
    prepare.add_argument(
        "--timeout", type=float, default=0, help="give up (exit 2) after this many seconds"
    )
    prepare.add_argument(
        "--learner-wait",
        type=float,
        default=DEFAULT_LEARNER_WAIT,
        help="give up (exit 2) when one learner has blocked the join this long (0: no limit)",
    )
    watch = commands.add_parser("watch", help="promote this learner, record, auth; then idle")
    watch.add_argument("--once", action="store_true", help="exit 0 once everything is done")
    watch.add_argument("--interval", type=float, default=30, help="seconds between checks")
    watch.add_argument("--timeout", type=float, default=120, help="with --once: give up after")
    watch.add_argument(
        "--rejoin-after",
        type=float,
        default=0,
        help="delete this pod when its member has been removed this long while the StatefulSet"
        " still wants it (0: never; longer than the scale-down hook's budget)",
    )
    scale = commands.add_parser("scale-down", help="remove members with ordinal >= N")
    scale.add_argument("--replicas", type=int, required=True, help="the new replica count N")
    scale.add_argument("--timeout", type=float, default=240, help="give up (exit 1) after")
    backup = commands.add_parser("backup", help="store a checked snapshot, prune old ones")
    backup.add_argument("--snapshot", required=True, help="the snapshot etcdctl saved")
    backup.add_argument("--name", required=True, help="the release's full name F")
    backup.add_argument("--keep", type=int, default=7, help="snapshots kept at each destination")
    backup.add_argument("--directory", default="", help="store in this directory (the claim)")
    backup.add_argument("--s3", action="store_true", help="upload to the ETCD_AGENT_S3_* bucket")
    fetch = commands.add_parser("restore-fetch", help="stage the snapshot this member restores")
    fetch.add_argument("--source", required=True, choices=("pvc", "s3"), help="where it is")
    fetch.add_argument("--pvc-file", default="", help="the snapshot file on the mounted claim")
    fetch.add_argument("--s3-key", default="", help="the snapshot's key in the bucket")
    fetch.add_argument("--timeout", type=float, default=0, help="give up (exit 2) after")
    defrag = commands.add_parser("defrag", help="defragment fragmented members, leader last")
    defrag.add_argument("--replicas", type=int, required=True, help="members the release runs")
    defrag.add_argument(
        "--threshold-percent",
        type=float,
        default=30,
        help="defragment a member when (dbSize - dbSizeInUse) / dbSize is at least this",
    )
    defrag.add_argument(
        "--min-db-size", type=int, default=0, help="never defragment a smaller database (bytes)"
    )
    defrag.add_argument(
        "--quota-bytes",
        type=int,
        default=0,
        help="quota-backend-bytes (0: etcd's 2 GiB) where the members do not report it",
    )
    defrag.add_argument(
        "--timeout", type=float, default=3600, help="start no member after this (exit 1)"
    )
    defrag.add_argument(
        "--member-timeout", type=float, default=600, help="seconds one defragmentation may take"
    )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    log = Log(args.command)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        if args.command == "backup":
            return run_backup(
                env, log, args.snapshot, args.name, args.keep, args.directory, args.s3
            )
        settings = Settings.from_env(env)
        settings.require()
        if args.command == "prepare":
            settings.require("pod_name")
            return run_prepare(settings, env, log, args.timeout, args.learner_wait)
        if args.command == "restore-fetch":
            settings.require("pod_name")
            return run_restore_fetch(
                settings, env, log, args.source, args.pvc_file, args.s3_key, args.timeout
            )
        if args.command == "watch":
            return run_watch(
                settings, env, log, args.once, args.interval, args.timeout, args.rejoin_after
            )
        if args.replicas < 0:
            raise AgentError(f"--replicas {args.replicas}: must be 0 or more")
        if args.command == "defrag":
            if not 0 <= args.threshold_percent <= 100:
                raise AgentError(
                    f"--threshold-percent {args.threshold_percent:g}: must be from 0 to 100"
                )
            policy = Policy(args.threshold_percent, args.min_db_size)
            return run_defrag(
                settings,
                log,
                args.replicas,
                policy,
                args.quota_bytes,
                args.timeout,
                args.member_timeout,
            )
        return run_scale_down(settings, env, log, args.replicas, args.timeout)
    except AgentError as err:
        log(f"error: {err}")
        return 1
    except Terminated:
        log("terminated by SIGTERM")
        return 0 if args.command == "watch" else 143
