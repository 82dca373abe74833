"""`vfl export`: this party's part of a trained model, in the documented format that loads without pickle;
`vfl score`: score IDs online with a model the active node serves."""
from __future__ import annotations

import argparse

from vfl.cli.common import EXIT_OK, add_json_options, emit_json, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export this party's part of a trained model (safetensors + JSON, no pickle)",
                       description="Writes weights.safetensors and model.json (architecture or custom-module name, "
                                   "schema, standardizer, fixed-point layout, job id, training-input hashes) for "
                                   "this party's part of training job JOB. The interactive weight stays a share: "
                                   "the export holds this party's share only. The export is "
                                   "written in the clear (it is the user's explicit copy of the model; the job's "
                                   "own files stay encrypted at rest). Format: docs/serving.md.")
    p.add_argument("job", help="the training job's id")
    p.add_argument("--config", required=True, help="the node config (node.yaml)")
    p.add_argument("--out", required=True, help="directory to write the exported part to")
    add_json_options(p, "where the part was written and what it holds")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="score IDs online with a model the active node serves (serving.models)",
                       description="Sends the IDs to the active node's Score RPC, which scores them jointly with the "
                                   "passive parties under the protection of training, and prints one line per ID: "
                                   "its status and scores. Exit code 1 if any ID was not scored. docs/serving.md.")
    p.add_argument("ids", nargs="+", metavar="ID", help="the IDs to score, as the active party's table writes them")
    p.add_argument("--model", required=True, help="the name the node serves the model under")
    p.add_argument("--config", required=True, help="a node config whose TLS files identify you (the node's own, "
                                                   "or a client's with role predict or train)")
    p.add_argument("--address", help="the node's address host:port (default: from the config's listen)")
    add_json_options(p, "the scores")
    p.set_defaults(func=cmd_score)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vfl.job.export import export_part
    from vfl.models.format import load_part
    from vfl.node.at_rest import open_at_rest
    from vfl.node.config import load_node_config
    config = load_node_config(args.config)
    open_at_rest(config)   # the model part is sealed at rest; the export is written in the clear (docs/serving.md)
    out = export_part(config.job_dir(args.job), Path(args.out))
    tensors, meta = load_part(out)   # read back: what was written loads
    summary = {"out": str(out), "party": meta["party"], "role": meta["role"], "job_id": meta["job_id"],
               "tensors": len(tensors), "weights_sha256": meta["weights_sha256"]}
    text = emit_json(args, summary)
    print(text) if args.json else say(args, f"exported {meta['role']} part of {meta['job_id']} for {meta['party']} "
                                            f"to {out} ({len(tensors)} tensors)")
    return EXIT_OK


def format_scores(reply: dict) -> str:
    outputs = reply["outputs"]
    rows = [("ID", "STATUS", *outputs)]
    for r in reply["results"]:
        scores = [f"{v:.6g}" for v in r["scores"]] if r["status"] == "ok" else [r["detail"] or "-"]
        rows.append((r["id"], r["status"], *scores))
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cmd_score(args: argparse.Namespace) -> int:
    from vfl.api import Client
    from vfl.cli.common import EXIT_FAILURE
    client = Client.from_node_config(args.config, args.address)
    try:
        reply = client.score(args.model, args.ids)
    finally:
        client.close()
    text = emit_json(args, reply)
    print(text) if args.json else say(args, format_scores(reply))
    return EXIT_OK if all(r["status"] == "ok" for r in reply["results"]) else EXIT_FAILURE
