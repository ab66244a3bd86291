"""Command line of `etcd-chart`: parses arguments and hands over to one module per subcommand.

Exit codes, for every subcommand: 0 success, 1 invalid input (the message says which field
and how to fix it), 2 could not run (a missing tool, an unreadable file, an unreachable cluster
that was required).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module that provides `add_arguments(parser)` and `run(args) -> int`.
# Modules are imported only when their subcommand runs, so `post-render` starts fast.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "post-render": (
        "etcd_chart.postrender.command",
        "read a rendered manifest stream on stdin, fill in etcd peer lists, validate, write stdout",
    ),
    "validate": ("etcd_chart.values_check", "check values files against the chart's schema"),
    "pki": ("etcd_chart.pki", "create a CA and server, peer and client certificates"),
    "migrate-values": (
        "etcd_chart.migrate",
        "turn a Bitnami etcd values file into this chart's, listing what has no equivalent",
    ),
    "sandbox": ("etcd_chart.sandbox.command", "run a rendered release locally with real etcd"),
}


def _chosen_subcommand(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in SUBCOMMANDS:
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen_subcommand(args_list)
    parser = argparse.ArgumentParser(prog="etcd-chart", description=__doc__.splitlines()[0])
    from etcd_chart import __version__

    parser.add_argument("--version", action="version", version=f"etcd-chart {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        sub.set_defaults(_module=module_name)
        if chosen == name:
            importlib.import_module(module_name).add_arguments(sub)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:  # argparse exits 2 on usage errors, 0 on --help
        return int(exit_.code or 0)
    if not getattr(args, "_module", None):
        parser.print_help(sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
