"""The lineage record each party signs at the end of a job (vfl/governance/lineage.py): built from the job spec,
this node's config and what the job left in its directory."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from vfl.governance.lineage import sha256_file, write_lineage

log = logging.getLogger("vfl.lineage")


def _json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def job_record(node, spec, job_dir: Path, role: str, metrics: dict | None = None) -> dict:
    from vfl import __version__
    from vfl.job.party_data import alignment_size, has_alignment
    config = node.config
    party = config.party
    dataset = config.dataset(spec.party(party).dataset)
    audit = _json_file(job_dir / "audit.json")
    seen = getattr(node, "peer_certificates", {})
    ca_sha256 = sha256_file(config.tls.ca) if config.tls is not None else None
    peers = {p.name: {"identity": p.identity, "ca_sha256": ca_sha256, "certificate_sha256": seen.get(p.name)}
             for p in config.peers if p.name in {q.name for q in spec.parties} and p.name != party}
    privacy = _json_file(job_dir / "privacy_report.json")
    return {
        "job_id": spec.job_id, "kind": spec.kind, "party": party, "role": role,
        "spec_sha256": hashlib.sha256(spec.to_yaml().encode()).hexdigest(), "code_version": __version__,
        "input": {"dataset": dataset.name, "file": dataset.path.name, "sha256": sha256_file(dataset.path),
                  "rows": audit.get("rows"),
                  "rows_after_psi": alignment_size(job_dir) if has_alignment(job_dir) else None},
        "peers": peers,
        "crypto": {"mode": spec.crypto.mode, "key_bits": spec.crypto.key_bits},
        "privacy": {"defense": privacy.get("defense"), "epsilon": (privacy.get("defense") or {}).get("epsilon")},
        "metrics": metrics or {},
    }


def record_job_lineage(node, spec, job_dir: Path, role: str, metrics: dict | None = None) -> Path | None:
    """Sign and write lineage.json for a finished job; a failure is logged, never fails a finished job."""
    tls = node.config.tls
    try:
        return write_lineage(job_dir, job_record(node, spec, job_dir, role, metrics),
                             tls.key if tls else None, tls.cert if tls else None)
    except Exception:  # noqa: BLE001 - the job's artifacts are on disk; the operator sees why lineage is missing
        log.exception("job %s: could not write its lineage", spec.job_id)
        return None
