"""CLI conventions shared by every command: --version, exit codes (0 / 1 / 2), one meaning of --json, help text
on every option, and `vfl certs` without an action."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vfl
from vfl.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def vfl_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def all_parsers(parser: argparse.ArgumentParser, path: str = "vfl"):
    """(command path, parser) for the top-level parser and every sub-command, nested ones included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, f"{path} {name}")


def test_version_matches_the_package_and_pyproject():
    out = vfl_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"vfl {vfl.__version__}"
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert declared == vfl.__version__


def test_every_option_and_command_has_help_text():
    missing = []
    for path, parser in all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}")
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_json_has_one_meaning_everywhere():
    """Wherever --json exists it is a flag (no argument) with the same help text, and --json-file takes the FILE."""
    seen = 0
    for path, parser in all_parsers(build_parser()):
        options = {o: a for a in parser._actions for o in a.option_strings}
        if "--json" not in options:
            continue
        seen += 1
        flag = options["--json"]
        assert isinstance(flag, argparse._StoreTrueAction), f"{path}: --json must be a flag"
        assert flag.help.startswith("print ") and "one JSON document on stdout" in flag.help, path
        assert "--json-file" in options and options["--json-file"].metavar == "FILE", path
    assert seen >= 6   # run, demo, psi, doctor, certs ca, certs issue


def test_certs_without_an_action_prints_the_certs_help(capsys):
    assert main(["certs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vfl certs") and "issue" in err and "vfl demo" not in err


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: vfl" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["serve", "--config", "node.yaml", "--log-level", "loud"],        # invalid choice
    ["run"],                                                           # missing argument
    ["psi", "--connect", "127.0.0.1:1", "--ids", "a.csv", "--column", "id", "--insecure"],   # --out missing
    ["psi", "--serve", "127.0.0.1:0", "--ids", "a.csv", "--column", "id", "--out", "o.csv"],  # no TLS, no --insecure
    ["certs", "issue", "--ca", "ca", "--identity", "bank a", "--out", "x"],                    # not a DNS name
    ["no-such-command"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_runtime_failures_exit_1(tmp_path, capsys):
    (tmp_path / "node.yaml").write_text("party: bank-a\nrole: active\ninsecure: true\n")
    assert main(["run", str(tmp_path / "missing.yaml"), "--config", str(tmp_path / "node.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["certs", "issue", "--ca", str(tmp_path / "no-ca"), "--identity", "bank-a",
                 "--out", str(tmp_path / "out")]) == 1
    assert "missing ca.crt" in capsys.readouterr().err
    (tmp_path / "ids.csv").write_text("id\n1\n")
    assert main(["psi", "--connect", "127.0.0.1:1", "--ids", str(tmp_path / "ids.csv"), "--column", "nope",
                 "--out", str(tmp_path / "o.csv"), "--insecure", "--quiet"]) == 1
    assert "no column 'nope'" in capsys.readouterr().err


def test_log_level_accepts_any_case():
    args = build_parser().parse_args(["serve", "--config", "n.yaml", "--log-level", "debug"])
    assert args.log_level == "DEBUG"


def test_json_output_of_certs_is_the_only_stdout(tmp_path):
    out = vfl_cli("certs", "ca", "--out", str(tmp_path / "ca"), "--json", "--json-file", str(tmp_path / "ca.json"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc == {"ca_cert": str(tmp_path / "ca" / "ca.crt"), "ca_key": str(tmp_path / "ca" / "ca.key")}
    assert json.loads((tmp_path / "ca.json").read_text()) == doc
    out = vfl_cli("certs", "issue", "--ca", str(tmp_path / "ca"), "--identity", "bank-a", "--out",
                  str(tmp_path / "a"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cert"] == str(tmp_path / "a" / "tls.crt")
    text = vfl_cli("certs", "issue", "--ca", str(tmp_path / "ca"), "--identity", "bank-b", "--out",
                   str(tmp_path / "b"))
    assert text.returncode == 0 and text.stdout.startswith("certificate: ")
