#!/usr/bin/env bash
# The PSI-only example: two organizations, each node its own process, learn how many customers they share
# (jobs/count.yaml), then which ones (jobs/match.yaml); then the nodes stop. A few seconds.
# Everything it writes goes under work/ (jobs from an earlier run are removed first).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
source ./env.sh
PARTIES=(shop-a bank-b)

rm -rf work/results work/nodes.pid
for party in "${PARTIES[@]}"; do rm -rf "work/$party"; done
mkdir -p work/results
./certs.sh

PIDS=()
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_nodes EXIT
for party in "${PARTIES[@]}"; do   # each node in the background, its output in work/PARTY.log
  "$PYTHON" -m vfl.cli.main serve --config "$party/node.yaml" > "work/$party.log" 2>&1 &
  PIDS+=("$!")
  echo "$!" >> work/nodes.pid
done

echo "== waiting for both nodes (vfl doctor)"
if ! vfl doctor --config shop-a/node.yaml --wait 60 > work/doctor.txt 2>&1; then
  cat work/doctor.txt; tail -n 20 work/shop-a.log work/bank-b.log; exit 1
fi

echo "== how many customers do we share? (cardinality: nobody learns which)"
vfl run jobs/count.yaml --config shop-a/node.yaml --json --json-file work/results/count.json > /dev/null
"$PYTHON" -c "import json; print('  ' + str(json.load(open('work/results/count.json'))['intersection']) + ' customers')"

echo "== which ones? (intersection: both learn the common IDs)"
vfl run jobs/match.yaml --config shop-a/node.yaml --json --json-file work/results/match.json > /dev/null
"$PYTHON" - <<'PY'
import json
from vfl.api import read_job_file
result = json.load(open("work/results/match.json"))
ids = json.loads(read_job_file(result["aligned_ids"], "shop-a/node.yaml"))   # encrypted at rest: shop-a's key
print(f"  {len(ids)} common customers, e.g. {', '.join(ids[:3])}")
print("  shop-a keeps them in work/shop-a/jobs/psi-only-match/aligned_ids.json,"
      " bank-b in work/bank-b/jobs/psi-only-match/aligned_ids.json, each encrypted at rest with its node's key"
      " (read: vfl at-rest cat FILE --config shop-a/node.yaml)")
PY
