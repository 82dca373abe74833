"""`vfl jobs`, `vfl jobs show`, `vfl attach` and `vfl cancel`: a node's jobs, as its operator sees them.

All of them talk to a node's Control service with the node's own certificate (`--config`), like `vfl run`; on an
active node they see the jobs it runs, on a passive node the jobs it serves.
"""
from __future__ import annotations

import argparse
import sys
import time

from vfl.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, UsageError, add_json_options, emit_json, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list this node's jobs, or show one (vfl jobs show JOB)",
                       description="Lists the jobs of a node (newest first) with their kind, state, stage and "
                                   "times; `vfl jobs show JOB` shows one job: its status, result and last events.")
    p.add_argument("action", nargs="*", metavar="show JOB", help="show one job in detail")
    _add_node_options(p)
    add_json_options(p, "the job list (or the job)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("attach", help="follow a running job again (after Ctrl-C on vfl run, or from elsewhere)",
                       description="Re-attaches the progress display to a job of the active node and follows it to "
                                   "its end; prints its result like vfl run. Ctrl-C detaches; the job runs on.")
    p.add_argument("job_id", metavar="JOB", help="the job's id")
    _add_node_options(p)
    add_json_options(p, "the job's result")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on stderr")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("cancel", help="cancel a job: it stops at every party and is closed as cancelled",
                       description="Cancels a job at the active node: it stops at its next step, and every party "
                                   "closes its side as cancelled (staged model parts are discarded). At a passive "
                                   "node, only that node's side is closed (its active party then fails the job).")
    p.add_argument("job_id", metavar="JOB", help="the job's id")
    _add_node_options(p)
    add_json_options(p, "the job's status after the cancel")
    p.set_defaults(func=cmd_cancel)


def _add_node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the node's config (its TLS files identify you)")
    p.add_argument("--address", help="the node's address host:port (default: from the config's listen)")


def _client(args: argparse.Namespace):
    from vfl.api import Client
    return Client.from_node_config(args.config, args.address)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _duration(job: dict) -> str:
    end = job.get("finished") or (time.time() if job.get("state") in ("running", "committing", "open") else 0)
    if not end or not job.get("created"):
        return "-"
    seconds = int(end - job["created"])
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _stage(job: dict) -> str:
    stage = job.get("stage") or "-"
    if "progress" in job and job.get("state") == "running":
        stage += f" {job['progress']:.0%}"
    if job.get("epoch") and job.get("kind") == "train":
        stage += f" (epoch {job['epoch']})"
    return stage


def format_jobs(jobs: list[dict]) -> str:
    rows = [("JOB", "KIND", "ROLE", "STATE", "STAGE", "CREATED", "FINISHED", "TIME")]
    rows += [(j["job_id"], j.get("kind") or "-", j.get("role") or "-", j.get("state") or "-", _stage(j),
              _when(j.get("created", 0)), _when(j.get("finished", 0)), _duration(j)) for j in jobs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def format_job(job: dict) -> str:
    lines = [f"job:      {job['job_id']} ({job.get('kind')}, {job.get('role')} here; active party "
             f"{job.get('active')})",
             f"state:    {job.get('state')} at stage {_stage(job)}",
             f"created:  {_when(job.get('created', 0))}   updated: {_when(job.get('updated', 0))}   finished: "
             f"{_when(job.get('finished', 0))}   time: {_duration(job)}"]
    if job.get("reason"):
        lines.append(f"reason:   {job['reason']}")
    result = job.get("result") or {}
    if result.get("test"):
        lines.append("test:     " + ", ".join(f"{k}={v:.4g}" for k, v in result["test"].items()))
    if "intersection" in result:
        lines.append(f"common:   {result['intersection']} IDs")
    for party, path in (result.get("model_parts") or {}).items():
        lines.append(f"model:    {party}: {path}")
    if result.get("predictions"):
        lines.append(f"output:   {result['predictions']}")
    events = job.get("events") or []
    if events:
        lines.append("last events:")
        lines += [f"  {_when(e['time'])}  [{e['stage']}] {e['message']}" for e in events[-10:]]
    return "\n".join(lines)


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.action and (args.action[0] != "show" or len(args.action) != 2):
        raise UsageError(f"unknown action {' '.join(args.action)!r}: use `vfl jobs` or `vfl jobs show JOB`")
    client = _client(args)
    try:
        if args.action:
            job = client.job(args.action[1])
            text = emit_json(args, job)
            print(text if args.json else format_job(job), flush=True)
        else:
            jobs = client.jobs()
            text = emit_json(args, jobs)
            print(text if args.json else (format_jobs(jobs) if jobs else "no jobs"), flush=True)
    finally:
        client.close()
    return 0


def reattach_hint(job_id: str, config: str, address: str | None = None) -> str:
    where = f" --config {config}" + (f" --address {address}" if address else "")
    return (f"job {job_id} keeps running at the active node. Follow it again with: vfl attach {job_id}{where}; "
            f"cancel it with: vfl cancel {job_id}{where}")


def cmd_attach(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        result = client.attach(args.job_id, progress=not (args.quiet or args.json))
    except KeyboardInterrupt:
        print(f"\ndetached: {reattach_hint(args.job_id, args.config, args.address)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        client.close()
    print(emit_json(args, result), flush=True)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        job = client.cancel(args.job_id)
    finally:
        client.close()
    text = emit_json(args, job)
    if args.json:
        print(text, flush=True)
    else:
        say(args, f"job {job['job_id']}: {job.get('state')} at stage {job.get('stage')}"
                  + (f" ({job['reason']})" if job.get("reason") else ""))
    return 0 if job.get("state") == "cancelled" else EXIT_FAILURE
