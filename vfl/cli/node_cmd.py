"""`vfl serve`, `vfl run`, `vfl certs` and `vfl demo`."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from vfl.cli.common import EXIT_USAGE, add_json_options, configure_logging, emit_json, log_level, say


def register(sub: argparse._SubParsersAction) -> None:
    _register_serve(sub)
    _register_run(sub)
    _register_certs(sub)
    _register_demo(sub)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run this organization's party node (long-running)",
                       description="Runs this party's node until SIGTERM or Ctrl-C.")
    p.add_argument("--config", required=True, help="node config YAML (see the README)")
    p.add_argument("--log-level", type=log_level, default="INFO", metavar="LEVEL",
                   help="DEBUG, INFO (default), WARNING, ERROR or CRITICAL")
    p.set_defaults(func=cmd_serve)


def _register_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="submit a job to the active node and follow it to completion",
                       description="Submits a job spec (any kind: train, predict, psi, cardinality) to the active "
                                   "node and follows its progress. The result is printed as JSON on stdout.")
    p.add_argument("job", help="job spec YAML")
    p.add_argument("--config", required=True, help="the active node's config (its TLS files identify you)")
    p.add_argument("--address", help="active node address host:port (default: from the config's listen)")
    add_json_options(p, "the job's result")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on stderr")
    p.set_defaults(func=cmd_run)


def _register_certs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help="development CA and party certificates for mutual TLS",
                       description="A development CA and party certificates (production: your PKI or "
                                   "cert-manager).")
    csub = p.add_subparsers(dest="certs_command", metavar="ACTION")
    ca = csub.add_parser("ca", help="create a development CA (ca.crt, ca.key)",
                         description="Writes ca.crt and ca.key into --out. An existing CA is never replaced "
                                     "without --force: certificates it signed would stop working.")
    ca.add_argument("--out", required=True, metavar="DIR", help="directory for ca.crt and ca.key")
    ca.add_argument("--name", default="vfl development CA", help="the CA's common name (default: %(default)s)")
    ca.add_argument("--days", type=int, default=365, help="validity in days (default %(default)s)")
    ca.add_argument("--force", action="store_true", help="replace an existing CA in --out")
    add_json_options(ca, "the paths written")
    ca.set_defaults(func=cmd_certs_ca)
    issue = csub.add_parser("issue", help="issue a party certificate (tls.crt, tls.key, ca.crt)",
                            description="Issues a server-and-client certificate for one party identity, signed "
                                        "by the CA in --ca.")
    issue.add_argument("--ca", required=True, metavar="DIR", help="directory holding ca.crt and ca.key")
    issue.add_argument("--identity", required=True, type=_dns_name,
                       help="party identity: the DNS name its peers expect (letters, digits, '-', '.')")
    issue.add_argument("--dns", action="append", default=[], metavar="NAME", type=_dns_name,
                       help="an extra DNS name, e.g. the Kubernetes Service name (repeatable)")
    issue.add_argument("--ip", action="append", default=["127.0.0.1"], metavar="ADDRESS",
                       help="an IP address to include (repeatable; 127.0.0.1 is always included)")
    issue.add_argument("--days", type=int, default=90, help="validity in days (default %(default)s)")
    issue.add_argument("--out", required=True, metavar="DIR", help="directory for tls.crt, tls.key and ca.crt")
    add_json_options(issue, "the paths written")
    issue.set_defaults(func=cmd_certs_issue)
    p.set_defaults(func=lambda args: _print_help(p))


def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="three hospital nodes on loopback: PSI, encrypted training, evaluation",
                       description="Runs the examples/hospitals example: three party nodes as separate processes "
                                   "with mutual TLS, PSI, encrypted training, and a centralized comparison.")
    p.add_argument("--workdir", default="runs/demo", help="where nodes keep data, certificates and jobs "
                                                           "(replaced on every run; default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the example's)")
    add_json_options(p, "the metrics")
    p.add_argument("--quiet", action="store_true", help="no progress bars or narration")
    p.set_defaults(func=cmd_demo)


def _dns_name(value: str) -> str:
    """argparse type: a certificate name no peer could match is a usage error, caught before any file is written."""
    from vfl.errors import ConfigError
    from vfl.transport.certs import check_dns_name
    try:
        return check_dns_name(value, "name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_serve(args: argparse.Namespace) -> int:
    from vfl.node.config import load_node_config
    from vfl.node.parent_watch import exit_with_parent
    from vfl.node.server import Node
    configure_logging(args.log_level)
    config = load_node_config(args.config)
    if config.insecure:  # also in the log; on the terminal too, where whoever started it will see it
        print("WARNING: this node runs with 'insecure: true': no TLS, no peer authentication, every message in "
              "the clear. For tests on one machine only, never between organizations.", file=sys.stderr, flush=True)
    node = Node(config)
    node.start()
    stop = lambda *_: node.stop()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_with_parent(node)
    print(f"vfl node {config.party} ({config.role}) listening on {config.listen}"
          + (f", health on {config.health_listen}" if config.health_listen else ""), flush=True)
    node.wait()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from vfl.api import Client
    from vfl.cli.common import EXIT_INTERRUPTED
    from vfl.cli.jobs_cmd import reattach_hint
    from vfl.job.spec import load_job_spec
    spec = load_job_spec(args.job)
    client = Client.from_node_config(args.config, args.address)
    try:
        result = client.run(spec, progress=not (args.quiet or args.json))
    except KeyboardInterrupt:  # the job is the node's, not this command's: it runs on
        print(f"\ninterrupted: {reattach_hint(spec.job_id, args.config, args.address)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        client.close()
    print(emit_json(args, result), flush=True)
    return 0


def cmd_certs_ca(args: argparse.Namespace) -> int:
    from vfl.transport.certs import create_ca
    crt, key = create_ca(args.out, args.name, days=args.days, overwrite=args.force)
    text = emit_json(args, {"ca_cert": str(crt), "ca_key": str(key)})
    if args.json:
        print(text, flush=True)
    else:
        print(f"CA certificate: {crt}\nCA key:         {key}  (keep it private)", flush=True)
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from vfl.transport.certs import issue_party_cert
    issued = issue_party_cert(args.ca, args.identity, args.out, tuple(args.dns), tuple(args.ip), args.days)
    text = emit_json(args, {"cert": str(issued.cert), "key": str(issued.key), "ca": str(issued.ca)})
    if args.json:
        print(text, flush=True)
    else:
        print(f"certificate: {issued.cert}\nkey:         {issued.key}\nCA bundle:   {issued.ca}", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vfl.demo import run_demo
    out = sys.stderr if args.json else sys.stdout
    metrics = run_demo(Path(args.workdir), epochs=args.epochs, progress=not args.quiet, out=out)
    text = emit_json(args, metrics)
    if args.json:
        print(text, flush=True)
    elif args.json_file:
        say(args, f"metrics written to {args.json_file}")
    return 0 if metrics.get("ok", True) else 1
