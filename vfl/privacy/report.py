"""The per-job privacy report each party writes about its own view: privacy_report.json and .md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vfl.data.atomic import atomic_write_text


def build_report(party: str, role: str, job_id: str, messages: list[dict], key_bits: int,
                 defense: dict | None = None, attacks: dict | None = None,
                 test_metrics: dict | None = None, tradeoff: list | None = None) -> dict[str, Any]:
    sent = sum(m["bytes"] for m in messages if m["direction"] == "sent")
    received = sum(m["bytes"] for m in messages if m["direction"] == "received")
    return {"job_id": job_id, "party": party, "role": role,
            "paillier_key_bits": key_bits, "keys": "fresh per job, held in memory only" if key_bits else "none",
            "bytes_sent": sent, "bytes_received": received, "messages": messages,
            "defense": defense or {}, "attacks": attacks or {}, "test_metrics": test_metrics or {},
            **({"tradeoff": tradeoff} if tradeoff else {})}


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Privacy report: job `{report['job_id']}`, party `{report['party']}` ({report['role']})", "",
             f"* Paillier key size: {report['paillier_key_bits'] or 'none (plaintext mode)'} bits ({report['keys']})",
             f"* Bytes sent: {report['bytes_sent']:,}; received: {report['bytes_received']:,}", ""]
    if report["defense"]:
        lines += ["## Defense", ""] + [f"* {k}: {v}" for k, v in report["defense"].items()] + [""]
    if report.get("tradeoff"):
        from vfl.privacy.tradeoff import markdown_table
        lines += markdown_table(report["tradeoff"])
    if report["attacks"]:
        lines += ["## Measured attacks", ""] + [f"* {k}: {v}" for k, v in report["attacks"].items()] + [""]
    if report["test_metrics"]:
        lines += ["## Model test metrics", ""] + [f"* {k}: {v}" for k, v in report["test_metrics"].items()] + [""]
    lines += ["## Messages on the wire (this party's view)", "",
              "| direction | peer | kind | messages | bytes |", "|---|---|---|---|---|"]
    lines += [f"| {m['direction']} | {m['peer']} | `{m['kind']}` | {m['messages']} | {m['bytes']:,} |"
              for m in report["messages"]]
    return "\n".join(lines) + "\n"


def write_report(job_dir: Path, report: dict[str, Any]) -> Path:
    """Both forms, each written atomically (a full disk once left 0-byte reports)."""
    path = atomic_write_text(job_dir / "privacy_report.json", json.dumps(report, indent=1, default=str),
                             "privacy report", report.get("party"))
    atomic_write_text(job_dir / "privacy_report.md", _markdown(report), "privacy report", report.get("party"))
    return path


def summary_line(report: dict[str, Any]) -> dict[str, Any]:
    """What `vfl demo` prints: defense, epsilon, attack AUCs, test metric, traffic."""
    out = {"defense": report["defense"].get("defense", "none")}
    if "epsilon" in report["defense"]:
        out["epsilon"] = round(report["defense"]["epsilon"], 3)
        out["delta"] = report["defense"]["delta"]
    out.update({k: round(v, 4) for k, v in report["attacks"].items() if isinstance(v, float)})
    out["bytes_sent"] = report["bytes_sent"]
    out["bytes_received"] = report["bytes_received"]
    return out
