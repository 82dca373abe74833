"""The `vfl` command. Each sub-command lives in its own module with a `register(subparsers)` function."""
from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order `vfl --help` lists them. A module missing from a checkout is skipped.
_COMMAND_MODULES = (
    "vfl.cli.node_cmd",    # serve, run, certs, demo
    "vfl.cli.psi_cmd",     # psi
    "vfl.cli.kube_cmd",    # doctor, submit
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vfl", description="Vertical federated learning between organizations.")
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors get one clear line, not a traceback
        from vfl.errors import VflError
        if isinstance(exc, VflError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
