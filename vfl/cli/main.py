"""The `vfl` command. Each sub-command lives in its own module with a `register(subparsers)` function.

Exit codes and `--json` follow the same rules in every command (vfl/cli/common.py): 0 success, 1 runtime failure,
2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vfl.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

# Sub-command modules, in the order `vfl --help` lists them. A module missing from a checkout is skipped.
_COMMAND_MODULES = (
    "vfl.cli.node_cmd",    # serve, run, certs, demo
    "vfl.cli.jobs_cmd",    # jobs, attach, cancel
    "vfl.cli.psi_cmd",     # psi
    "vfl.cli.kube_cmd",    # doctor, submit
    "vfl.cli.governance_cmd",  # audit, audit-log, lineage, gc
    "vfl.cli.model_cmd",   # export
)

_EPILOG = ("exit codes: 0 success, 1 runtime failure (data, peers, a failed job or check), 2 usage error, "
           "130 interrupted. --json, wherever a command offers it, prints only the result as one JSON document "
           "on stdout.")


def version() -> str:
    """vfl.__version__: the package's own, so a checkout run through PYTHONPATH reports itself, not whatever
    distribution is installed (tests keep pyproject.toml's version equal to it)."""
    from vfl import __version__
    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vfl", description="Vertical federated learning between organizations.",
                                     epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"vfl {version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 after a usage error, 0 after --help or --version
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # user-facing errors get one clear line, not a traceback
        from psi.errors import PsiError
        from vfl.errors import VflError
        if isinstance(exc, (VflError, PsiError)):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        raise


if __name__ == "__main__":
    sys.exit(main())
