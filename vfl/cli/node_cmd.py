"""`vfl serve`, `vfl run`, `vfl certs` and `vfl demo`."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run this organization's party node (long-running)")
    p.add_argument("--config", required=True, help="node config YAML")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("run", help="submit a job to the active node and follow it to completion")
    p.add_argument("job", help="job spec YAML")
    p.add_argument("--config", required=True, help="the active node's config (its TLS files identify you)")
    p.add_argument("--address", help="active node address host:port (default: from the config's listen)")
    p.add_argument("--json", metavar="FILE", help="write the result metrics to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("certs", help="development CA and party certificates for mutual TLS")
    csub = p.add_subparsers(dest="certs_command", metavar="ACTION")
    ca = csub.add_parser("ca", help="create a development CA (ca.crt, ca.key)")
    ca.add_argument("--out", required=True)
    ca.add_argument("--name", default="vfl development CA")
    ca.set_defaults(func=cmd_certs_ca)
    issue = csub.add_parser("issue", help="issue a party certificate (tls.crt, tls.key, ca.crt)")
    issue.add_argument("--ca", required=True, help="directory holding ca.crt and ca.key")
    issue.add_argument("--identity", required=True, help="party identity (DNS name peers expect)")
    issue.add_argument("--dns", action="append", default=[], help="extra DNS names (e.g. the Service name)")
    issue.add_argument("--ip", action="append", default=["127.0.0.1"], help="IP addresses to include")
    issue.add_argument("--days", type=int, default=90)
    issue.add_argument("--out", required=True)
    issue.set_defaults(func=cmd_certs_issue)
    p.set_defaults(func=lambda args: p.print_help() or 2)

    p = sub.add_parser("demo", help="three hospital nodes on loopback: PSI, encrypted training, evaluation")
    p.add_argument("--workdir", default="runs/demo", help="where nodes keep data, certificates and jobs")
    p.add_argument("--json", metavar="FILE", help="write the metrics to FILE")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from vfl.node.config import load_node_config
    from vfl.node.server import Node
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_node_config(args.config)
    if config.insecure:  # also in the log; on the terminal too, where whoever started it will see it
        print("WARNING: this node runs with 'insecure: true': no TLS, no peer authentication, every message in "
              "the clear. For tests on one machine only, never between organizations.", file=sys.stderr, flush=True)
    node = Node(config)
    node.start()
    stop = lambda *_: node.stop()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"vfl node {config.party} ({config.role}) listening on {config.listen}"
          + (f", health on {config.health_listen}" if config.health_listen else ""), flush=True)
    node.wait()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from vfl.api import run_job
    result = run_job(args.job, args.config, address=args.address, progress=not args.quiet)
    text = json.dumps(result, indent=1, default=str)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


def cmd_certs_ca(args: argparse.Namespace) -> int:
    from vfl.transport.certs import create_ca
    crt, key = create_ca(args.out, args.name)
    print(f"CA certificate: {crt}\nCA key:         {key}  (keep it private)")
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from vfl.transport.certs import issue_party_cert
    issued = issue_party_cert(args.ca, args.identity, args.out, tuple(args.dns), tuple(args.ip), args.days)
    print(f"certificate: {issued.cert}\nkey:         {issued.key}\nCA bundle:   {issued.ca}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vfl.demo import run_demo
    metrics = run_demo(Path(args.workdir), epochs=args.epochs, progress=not args.quiet)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1, default=str))
        print(f"metrics written to {args.json}")
    return 0 if metrics.get("ok", True) else 1
