"""`vfl doctor` (peer reachability diagnostics) and `vfl submit --kube` (a training Job in Kubernetes)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vfl.cli.common import add_json_options, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check that this node's peers are reachable and accept its certificate",
                       description="Checks this node's certificate, then for each peer: DNS, TCP, TLS (both "
                                   "directions of trust, expected identity) and the gRPC health service over "
                                   "mutual TLS. Exits 1 if any check fails.")
    p.add_argument("--config", required=True, help="the node config (in the chart: /etc/vfl/config/node.yaml)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME",
                   help="check only this peer (repeatable; default: every peer)")
    p.add_argument("--self", dest="check_self", action="store_true",
                   help="check this node itself instead, as `vfl run` reaches it (the training Job does this)")
    p.add_argument("--address", help="with --self: this node's address host:port (default: from the config's listen)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per network step (default 5)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="repeat the checks until they pass or SECONDS have passed")
    add_json_options(p, "the report")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("submit", help="submit a job spec as a Kubernetes Job at the active party (--kube)",
                       description="Creates a ConfigMap with the job spec and a Job running `vfl run` against the "
                                   "release's node (the same objects as the chart's job template), then streams "
                                   "its status and logs until it finishes.")
    p.add_argument("job", help="job spec YAML")
    p.add_argument("--kube", action="store_true", required=True, help="submit through the Kubernetes API")
    p.add_argument("--namespace", "-n", help="the active party's namespace (default: the kubeconfig context's "
                                             "namespace, in a pod its service account's, else 'default')")
    p.add_argument("--release", required=True, help="the active party's Helm release of charts/vfl-party")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config; in a pod: "
                                        "its service account)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--no-follow", action="store_true", help="create the Job and return")
    p.set_defaults(func=cmd_submit)


def cmd_doctor(args: argparse.Namespace) -> int:
    from vfl.deploy.doctor import format_text, run_doctor, run_until_ok
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)

    def once():
        return run_doctor(config, peers=args.peer, check_self=args.check_self, address=args.address,
                          timeout=args.timeout)

    def retry(report) -> None:
        failed = [f"{t.name}: {c.check}" for t in report.targets for c in t.checks if c.status == "fail"]
        print(f"vfl doctor: not yet ({'; '.join(failed)}), retrying", file=sys.stderr, flush=True)

    report = run_until_ok(once, args.wait, on_retry=retry) if args.wait > 0 else once()
    text = emit_json(args, report.to_dict())
    print(text if args.json else format_text(report), flush=True)
    return 0 if report.ok else 1


def cmd_submit(args: argparse.Namespace) -> int:
    from vfl.deploy.kube import api_client, submit
    from vfl.errors import ConfigError
    path = Path(args.job)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"job spec {path}: cannot read: {exc.strerror}") from None
    from vfl.deploy.kube import default_namespace
    client = api_client(args.kubeconfig, args.context)
    namespace = args.namespace or default_namespace(args.kubeconfig, args.context)
    return submit(text, namespace, args.release, client, source=f"job spec {path}",
                  follow=not args.no_follow, out=lambda line: print(line, file=sys.stderr, flush=True))
