"""Every `vfl` command and `make` target the READMEs show is exercised by a test that runs it.

The READMEs' shell blocks are scanned for commands; each command's form (its sub-command and the options that
select what it does) must be listed in COVERED with the tests that run it, and those tests must exist. A command
added to a README without a test fails here.
"""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
READMES = [REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md")), REPO / "examples" / "README.md"]

BANKS_RUN = "tests/examples/test_examples.py::test_bank_credit_run_sh"
COVERED = {
    "vfl certs ca": ["tests/cli/test_certs.py::test_an_existing_ca_is_kept_without_force", BANKS_RUN],
    "vfl certs issue": ["tests/cli/test_certs.py::test_valid_dns_names_are_issued", BANKS_RUN],
    "vfl serve": [BANKS_RUN, "tests/examples/test_examples.py::test_hospitals_run_sh"],
    "vfl run": [BANKS_RUN, "tests/node/test_cardinality_job.py::test_vfl_run_with_a_cardinality_spec"],
    "vfl jobs": ["tests/cli/test_job_commands.py::test_vfl_jobs_lists_and_shows_jobs_at_both_nodes"],
    "vfl jobs show": ["tests/cli/test_job_commands.py::test_vfl_jobs_lists_and_shows_jobs_at_both_nodes"],
    "vfl attach": ["tests/cli/test_job_commands.py::test_ctrl_c_on_vfl_run_says_how_to_reattach_and_vfl_attach_does"],
    "vfl cancel": ["tests/cli/test_job_commands.py::test_vfl_cancel_stops_the_job_at_every_party"],
    "vfl doctor": ["tests/deploy/test_doctor.py::test_cli_json_and_exit_codes", BANKS_RUN],
    "vfl submit --kube": ["tests/deploy/test_submit.py::test_cli_reports_a_refusal_in_one_line"],
    "vfl demo": ["tests/examples/test_examples.py::test_vfl_demo_runs_the_hospitals_example"],
    "vfl audit": ["tests/governance/test_cli_audit.py::test_vfl_audit_reports_and_exits_1_on_a_refused_column"],
    "vfl audit-log verify": ["tests/governance/test_node_governance.py::test_both_nodes_log_the_job_and_the_log_verifies"],
    "vfl lineage verify": ["tests/governance/test_node_governance.py::test_both_nodes_log_the_job_and_the_log_verifies"],
    "vfl gc": ["tests/governance/test_retention.py::test_vfl_gc_deletes_and_writes_the_audit_log"],
    "vfl export": ["tests/models/test_export_format.py::test_vfl_export_cli", BANKS_RUN],
    "vfl score": ["tests/node/test_serving.py::test_vfl_score_prints_each_id_and_fails_when_one_is_not_scored",
                  BANKS_RUN],
    "vfl at-rest cat": [BANKS_RUN, "tests/governance/test_at_rest_node.py::"
                        "test_jobs_dirs_hold_no_plaintext_weights_or_ids_and_a_lost_wrong_or_rotated_key_is_handled"],
    "vfl at-rest new-key": ["tests/governance/test_at_rest_node.py::"
                            "test_jobs_dirs_hold_no_plaintext_weights_or_ids_and_a_lost_wrong_or_rotated_key_is_handled"],
    "vfl at-rest rotate": ["tests/governance/test_at_rest_node.py::"
                           "test_jobs_dirs_hold_no_plaintext_weights_or_ids_and_a_lost_wrong_or_rotated_key_is_handled"],
    "vfl --version": ["tests/cli/test_conventions.py::test_version_matches_the_package_and_pyproject"],
    "vfl psi --serve": ["tests/psi/test_grpc.py::test_cli_mutual_tls_with_peer_identity_checks",
                        "tests/examples/test_examples.py::test_psi_only_readme_standalone_commands"],
    "vfl psi --connect": ["tests/psi/test_grpc.py::test_cli_mutual_tls_with_peer_identity_checks",
                          "tests/examples/test_examples.py::test_psi_only_readme_standalone_commands"],
    "make demo": ["tests/examples/test_examples.py::test_vfl_demo_runs_the_hospitals_example"],   # runs `vfl demo`
    "make example-bank-credit": [BANKS_RUN],                                                   # each runs its run.sh
    "make example-hospitals": ["tests/examples/test_examples.py::test_hospitals_run_sh"],
    "make example-psi-only": ["tests/examples/test_examples.py::test_psi_only_run_sh"],
    "make test": [],                                                                     # this suite itself
    "make fuzz": ["tests/fuzz/test_make_fuzz.py::test_make_fuzz_runs_hypothesis_then_atheris"],   # narrowed
    "examples/bank-credit/run.sh": [BANKS_RUN],
    "examples/hospitals/run.sh": ["tests/examples/test_examples.py::test_hospitals_run_sh"],
    "examples/psi-only/run.sh": ["tests/examples/test_examples.py::test_psi_only_run_sh"],
    "./certs.sh": [BANKS_RUN, "tests/examples/test_examples.py::test_psi_only_readme_standalone_commands"],
    "python notebook.py": ["tests/examples/test_examples.py::test_bank_credit_notebook"],
}
# selects what a command does, so each is its own form
_SELECTORS = {"--serve", "--connect", "--kube", "--version"}


def shell_lines(readme: Path) -> list[str]:
    """Commands in the README's ```sh blocks: continuation lines joined, comments and env assignments dropped."""
    out, current = [], ""
    for block in readme.read_text().split("```sh\n")[1:]:
        for line in block.split("```")[0].splitlines():
            current += line.split(" #")[0].rstrip("\\").strip() + " "
            if line.rstrip().endswith("\\"):
                continue
            words = [w for w in shlex.split(current.strip(), comments=True) if not re.match(r"^[A-Z_]+=", w)]
            current = ""
            if words:
                out.append(words)
    return out


def form(words: list[str]) -> str | None:
    """'vfl certs ca', 'vfl psi --serve', 'make demo', ... or None for a line that is not a vfl or make command."""
    if words[0] == "make" and len(words) > 1:
        return f"make {words[1]}"
    if words[0].endswith(("run.sh", "certs.sh")):
        return words[0]
    if words[:2] == ["python", "notebook.py"]:
        return "python notebook.py"
    if words[0] != "vfl":
        return None
    rest = words[1:]
    if rest[0].startswith("-"):
        return f"vfl {rest[0]}"
    name = f"vfl {rest[0]}"
    if rest[0] in ("certs", "audit-log", "lineage", "at-rest") or (rest[0] == "jobs" and len(rest) > 1
                                                         and not rest[1].startswith("-")):
        return f"{name} {rest[1]}"
    selected = [w for w in rest[1:] if w in _SELECTORS]
    return f"{name} {selected[0]}" if selected else name


def readme_forms() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for readme in READMES:
        for words in shell_lines(readme):
            name = form(words)
            if name:
                found.setdefault(name, set()).add(str(readme.relative_to(REPO)))
    return found


def test_every_readme_command_has_a_test():
    found = readme_forms()
    assert {"vfl certs ca", "vfl run", "vfl psi --serve", "make demo"} <= set(found), found   # the scan works
    missing = {name: where for name, where in found.items() if name not in COVERED}
    assert not missing, f"README commands without a test listed in COVERED: {missing}"


@pytest.mark.parametrize("name", sorted(COVERED))
def test_the_listed_tests_exist(name):
    for node in COVERED[name]:
        path, function = node.split("::")
        tree = ast.parse((REPO / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert function in names, f"{node} (listed for {name!r}) does not exist"
