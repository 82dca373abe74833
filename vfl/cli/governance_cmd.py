"""`vfl audit` (the data audit of a dataset, vfl/governance/audit.py), `vfl audit-log verify` (the node's
tamper-evident log, vfl/governance/audit_log.py), `vfl gc`, `vfl lineage verify` and `vfl at-rest` (encryption at
rest of the job files, vfl/data/sealed.py)."""
from __future__ import annotations

import argparse

from vfl.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_json_options, emit_json, say


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

    p = sub.add_parser("audit-log", help="the node's tamper-evident audit log",
                       description="The node appends who connected or was refused, every job submitted, opened, "
                                   "refused, closed or finished, and every PSI session to a hash-chained log keyed "
                                   "with its audit key (node.yaml audit.log / audit.key).")
    asub = p.add_subparsers(dest="action", metavar="ACTION")
    verify = asub.add_parser("verify", help="check every entry's MAC, the chain and the head; exit 1 on the first "
                                            "edited, deleted, reordered or cut line",
                             description="Exit 0 and a summary when the log is intact; exit 1 naming the first line "
                                         "that fails and how.")
    verify.add_argument("--config", required=True, help="the node config (node.yaml), for the log's and key's paths")
    add_json_options(verify, "the verification result")
    verify.set_defaults(func=cmd_audit_log_verify)
    p.set_defaults(func=lambda args, p=p: _usage(p))

    p = sub.add_parser("gc", help="apply the node's retention policy now: delete what finished jobs no longer need",
                       description="Deletes, in every job that has ended, each kind of file (aligned_ids, "
                                   "checkpoints, model_parts, results, logs) whose retention in node.yaml has passed; "
                                   "each deletion goes to the audit log and the job's retention.json. Jobs that have "
                                   "not ended are left alone. The node does the same at start and periodically; "
                                   "run this while the node is stopped, or with --dry-run.")
    p.add_argument("--config", required=True, help="the node config (node.yaml)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    add_json_options(p, "the deletions")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("lineage", help="a job's signed lineage at this node")
    lsub = p.add_subparsers(dest="action", metavar="ACTION")
    verify = lsub.add_parser("verify", help="check a job's lineage signature and rehash its artifacts; exit 1 naming "
                                            "the first changed or missing file",
                             description="Checks lineage.json in the job's directory against this node's certificate "
                                         "(tls.cert) and every artifact it lists against its SHA-256.")
    verify.add_argument("job", help="the job id")
    verify.add_argument("--config", required=True, help="the node config (node.yaml)")
    add_json_options(verify, "the verified lineage record")
    verify.set_defaults(func=cmd_lineage_verify)
    p.set_defaults(func=lambda args, p=p: _usage(p))

    p = sub.add_parser("at-rest", help="encryption at rest of the job files: new keys, key rotation, reading a file",
                       description="Model parts, checkpoints, aligned IDs, predictions and every other job file "
                                   "holding weights or IDs are sealed with AES-256-GCM under node.yaml at_rest.key; "
                                   "each file's header names its key id. Rotation: make a new key, set it as "
                                   "at_rest.key with the old one in at_rest.previous_keys, then `vfl at-rest rotate` "
                                   "(or restart the node, which does the same at start), then drop the old key.")
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    new = rsub.add_parser("new-key", help="write a new key (32 bytes from the OS generator, hex) to a file, mode 0600",
                          description="Never overwrites a file. For Kubernetes: kubectl create secret generic NAME "
                                      "--from-file=key=PATH, then remove PATH.")
    new.add_argument("path", help="where to write the key (must not exist)")
    add_json_options(new, "the key's file and id")
    new.set_defaults(func=cmd_at_rest_new_key)
    rotate = rsub.add_parser("rotate", help="re-encrypt every job file under the current key (at_rest.key)",
                             description="Re-encrypts what a key in at_rest.previous_keys sealed, and seals the "
                                         "job files written in the clear before encryption was on. Run it while "
                                         "the node is stopped (a starting node does the same). Exits 1 if some "
                                         "files are sealed under a key the config does not name.")
    rotate.add_argument("--config", required=True, help="the node config (node.yaml)")
    rotate.add_argument("--dry-run", action="store_true", help="count what would be re-encrypted, change nothing")
    add_json_options(rotate, "the files re-encrypted and the key ids")
    rotate.set_defaults(func=cmd_at_rest_rotate)
    cat = rsub.add_parser("cat", help="print (or write to --out) the plaintext of a job file, e.g. predictions.csv",
                          description="Opens a file under jobs_dir with the node's at-rest key. The plaintext is "
                                      "the user's explicit export: put it where such data may be.")
    cat.add_argument("path", help="the job file (e.g. jobs/credit-predict/predictions.csv)")
    cat.add_argument("--config", required=True, help="the node config (node.yaml)")
    cat.add_argument("--out", help="write the plaintext to this file instead of stdout")
    cat.set_defaults(func=cmd_at_rest_cat)
    p.set_defaults(func=lambda args, p=p: _usage(p))


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


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def cmd_audit_log_verify(args: argparse.Namespace) -> int:
    from vfl.governance.audit_log import AuditLogError, load_key, verify
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    try:
        result = verify(config.audit_log, load_key(config.audit_key))
    except AuditLogError as exc:
        text = emit_json(args, {"ok": False, "log": str(config.audit_log), "error": str(exc)})
        if args.json:
            print(text)
        raise
    summary = {"ok": True, "log": str(config.audit_log), "entries": result.entries, "first": result.first_time,
               "last": result.last_time}
    text = emit_json(args, summary)
    print(text) if args.json else say(args, f"audit log {config.audit_log}: intact, {result.entries} entries "
                                            f"({result.first_time} .. {result.last_time})")
    return EXIT_OK


def cmd_lineage_verify(args: argparse.Namespace) -> int:
    from vfl.governance.lineage import verify_lineage
    from vfl.node.at_rest import open_at_rest
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    open_at_rest(config)   # sealed artifacts are hashed by their plaintext
    record = verify_lineage(config.job_dir(args.job), config.tls.cert if config.tls else None)
    text = emit_json(args, record)
    signed = "signed" if config.tls else "unsigned (insecure node)"
    print(text) if args.json else say(args, f"job {args.job} at {config.party}: lineage {signed} and intact, "
                                            f"{len(record.get('artifacts', {}))} artifacts")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vfl.governance.audit_log import AuditLog, load_or_create_key
    from vfl.governance.retention import sweep
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    log = None if args.dry_run else AuditLog(config.audit_log, load_or_create_key(config.audit_key))

    def deleted(d) -> None:
        log.append("retention (vfl gc)", "deleted", job_id=d.job_id, kind=d.kind, paths=list(d.paths), bytes=d.bytes)
    done = sweep(config.jobs_dir, config.retention, dry_run=args.dry_run, on_delete=deleted)
    text = emit_json(args, {"dry_run": args.dry_run, "deletions": [asdict(d) for d in done]})
    if args.json:
        print(text)
    else:
        verb = "would delete" if args.dry_run else "deleted"
        for d in done:
            say(args, f"job {d.job_id}: {verb} {d.kind} ({', '.join(d.paths)}, {d.bytes} bytes)")
        say(args, f"{len(done)} deletion(s)" if done else "nothing to delete under the retention policy")
    return EXIT_OK


def cmd_at_rest_new_key(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vfl.data.sealed import new_key_file
    from vfl.errors import ConfigError
    try:
        kid = new_key_file(Path(args.path))
    except FileExistsError:
        raise ConfigError(f"{args.path} exists; a key file is never overwritten (a lost key makes its files "
                          "unreadable)") from None
    text = emit_json(args, {"path": args.path, "key_id": kid})
    print(text) if args.json else say(args, f"wrote at-rest key {kid} to {args.path} (mode 0600)")
    return EXIT_OK


def cmd_at_rest_rotate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vfl.errors import ConfigError
    from vfl.node.at_rest import load_keys, reseal_jobs
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    if not config.at_rest.encrypt:
        raise ConfigError("at_rest.encrypt is false: there is nothing to rotate to (turn encryption on first)")
    keys = load_keys(config)
    if keys is None:
        raise ConfigError(f"at_rest.key: {config.at_rest.key} does not exist yet (the node creates it at its first "
                          "start, or make one with `vfl at-rest new-key`)")
    report = reseal_jobs(config, keys, dry_run=args.dry_run)
    text = emit_json(args, {"dry_run": args.dry_run, "key_id": keys.current_id, "key_ids": keys.ids(),
                            **asdict(report)})
    if args.json:
        print(text)
    else:
        verb = "would re-encrypt" if args.dry_run else "re-encrypted"
        say(args, f"{verb} {len(report.resealed)} file(s) and {'would seal' if args.dry_run else 'sealed'} "
                  f"{len(report.sealed)} written in the clear, under key {keys.current_id}; {report.current} "
                  f"already under it, {report.plain} metadata file(s) stay plaintext")
        for name in report.unknown:
            say(args, f"  {name}: sealed under a key this config does not name")
    if report.unknown:
        say(args, f"{len(report.unknown)} file(s) are sealed under a key the config does not name: add it to "
                  "at_rest.previous_keys (or they stay unreadable)")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_at_rest_cat(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from vfl.data import sealed
    from vfl.data.atomic import atomic_write, atomic_write_bytes
    from vfl.node.at_rest import open_at_rest
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    open_at_rest(config)
    path = Path(args.path)
    if args.out and sealed.sealing_keys(Path(args.out)) is not None:   # a copy under a jobs_dir is sealed again
        atomic_write_bytes(Path(args.out), sealed.read_bytes(path), "plaintext copy")
    elif args.out:   # a segment at a time: a large predictions.csv never sits whole in memory
        def write(tmp: str) -> None:
            with open(tmp, "wb") as out:
                for part in sealed.iter_plaintext(path):
                    out.write(part)
        atomic_write(Path(args.out), write, "plaintext copy")
    else:
        for part in sealed.iter_plaintext(path):
            sys.stdout.buffer.write(part)
        sys.stdout.flush()
    return EXIT_OK
