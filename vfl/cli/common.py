"""Conventions every `vfl` command shares: exit codes, `--json`, `--log-level`.

Exit codes: 0 success; 1 runtime failure (bad data, a refused or failed job, an unreachable peer, a failed
check); 2 usage error (unknown or contradictory options, a missing argument); 130 interrupted (Ctrl-C).

`--json` has one meaning wherever it appears: standard output carries exactly one JSON document, the command's
result, and nothing else (progress and messages go to standard error). `--json-file FILE` writes the same document
to FILE as well.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vfl.errors import VflError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class UsageError(VflError):
    """The command line itself is wrong (contradictory or missing options): exit code 2, like argparse's errors."""


def log_level(value: str) -> str:
    """argparse type for --log-level: one of LOG_LEVELS, any case, so a typo fails at start-up, not silently."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level (choose from {', '.join(LOG_LEVELS)})")
    return level


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def add_json_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--json and --json-file with the wording every command uses; `what` names the result."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout, and nothing else there")
    parser.add_argument("--json-file", metavar="FILE", help=f"also write {what} as JSON to FILE")


def emit_json(args: argparse.Namespace, result: Any, indent: int | None = 1) -> str:
    """Write the result to --json-file if given; return its JSON text (the caller prints it when it should)."""
    text = json.dumps(result, indent=indent, default=str)
    if getattr(args, "json_file", None):
        path = Path(args.json_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
        except OSError as exc:
            raise VflError(f"--json-file {path}: cannot write: {exc.strerror or exc}") from None
    return text


def say(args: argparse.Namespace, *parts: Any) -> None:
    """Human-readable output: stdout normally, stderr under --json (stdout then holds only the JSON result)."""
    print(*parts, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)
