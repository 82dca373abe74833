"""Score single applicants online, from Python: bank-a's node answers each one in well under a second.

Run it after run.sh has trained the model and exported each bank's part (both node configs register it under
serving.models as `credit`), while both nodes run:

    python score.py                 # the first three applicants in data/bank-a/applicants.csv
    python score.py 288144 914138   # these applicants

Each request goes to bank-a's Score RPC with bank-a's own certificate; bank-a asks bank-b for its share of the
interactive layer under encryption (bank-b learns which applicant is scored, not the score) and returns
P(default) per applicant, or why an applicant could not be scored (e.g. bank-b holds no account of theirs).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from vfl.api import Client

HERE = Path(__file__).resolve().parent


def main(ids: list[str]) -> list[dict]:
    if not ids:
        ids = pd.read_csv(HERE / "data" / "bank-a" / "applicants.csv", dtype=str)["customer_id"].head(3).tolist()
    client = Client.from_node_config(HERE / "bank-a" / "node.yaml")
    results = []
    try:
        for applicant in ids:
            t0 = time.perf_counter()
            reply = client.score("credit", [applicant])
            ms = (time.perf_counter() - t0) * 1000
            r = reply["results"][0]
            if r["status"] == "ok":
                print(f"  applicant {applicant}: P(default) = {r['scores'][0]:.3f} ({ms:.0f} ms)")
            else:
                print(f"  applicant {applicant}: {r['status']}: {r['detail']} ({ms:.0f} ms)")
            results.append({**r, "milliseconds": round(ms, 1)})
    finally:
        client.close()
    return results


if __name__ == "__main__":
    out = main(sys.argv[1:])
    (HERE / "work" / "results").mkdir(parents=True, exist_ok=True)
    (HERE / "work" / "results" / "score-python.json").write_text(json.dumps(out, indent=1))
