"""`vfl audit`: the data audit of one of this node's datasets (vfl/governance/audit.py), before any job uses it."""
from __future__ import annotations

import argparse

from vfl.cli.common import EXIT_FAILURE, EXIT_OK, add_json_options, emit_json, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit one of this node's datasets: schema, missing values, constant columns, "
                                     "personal data, quasi-identifier risk",
                       description="Reads the dataset as the node config declares it and reports, per column, its "
                                   "role, type, missing and distinct values, constant or near-constant columns, and "
                                   "what looks like personal data (names, e-mails, phone numbers, national ID, card "
                                   "and IBAN numbers with their check digits, dates of birth, addresses, free text), "
                                   "then the smallest group size over the demographic-looking columns. The same "
                                   "audit runs when a job opens; a job refuses flagged feature columns unless "
                                   "policy.allow_pii_columns names them. Exits 1 if a feature column is flagged "
                                   "and not allowed. Nothing is sent anywhere.")
    p.add_argument("dataset", help="the dataset's name in the node config's datasets")
    p.add_argument("--config", required=True, help="the node config (node.yaml)")
    add_json_options(p, "the report")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    import json
    from vfl.governance.audit import audit_dataset
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    report = audit_dataset(config.dataset(args.dataset))
    text = emit_json(args, json.loads(report.to_json()))
    if args.json:
        print(text)
    else:
        say(args, report.to_text())
    refused = report.pii_features(config.policy.allow_pii_columns)
    if refused:
        say(args, f"\na job would refuse this dataset: {len(refused)} flagged feature column(s) not in "
                  f"policy.allow_pii_columns")
    return EXIT_FAILURE if refused else EXIT_OK
