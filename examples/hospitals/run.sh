#!/usr/bin/env bash
# The hospitals example end to end, each organization's node its own process: certificates, the three nodes, a
# check of the connections, then PSI -> train -> evaluate -> predict with `vfl run` at hospital-a, and the nodes
# stopped again. (`vfl demo` runs the same example through the Python API instead: hospitals.py.)
#   ./run.sh                 # about a minute on two cores
#   EPOCHS=1 ./run.sh        # quicker (the test suite runs this)
# Everything it writes goes under work/ (jobs from an earlier run are removed first).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
source ./env.sh
PARTIES=(hospital-a lab-b imaging-c)

rm -rf work/results work/jobs work/nodes.pid
for party in "${PARTIES[@]}"; do rm -rf "work/$party"; done
mkdir -p work/results work/jobs
./certs.sh
cp jobs/*.yaml work/jobs/
if [[ -n "${EPOCHS:-}" ]]; then
  sed -E -i "s/epochs: [0-9]+/epochs: $EPOCHS/" work/jobs/train.yaml
fi

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

echo "== waiting for the nodes (vfl doctor: DNS, TCP, TLS identity, health, every direction)"
: > work/doctor.txt
for party in "${PARTIES[@]}"; do
  if ! vfl doctor --config "$party/node.yaml" --wait 60 >> work/doctor.txt 2>&1; then
    cat work/doctor.txt; for p in "${PARTIES[@]}"; do tail -n 20 "work/$p.log"; done; exit 1
  fi
done
echo "  all three nodes are up and accept each other (report: work/doctor.txt)"

run() {   # run NAME: the job spec work/jobs/NAME.yaml at hospital-a; its result goes to work/results/NAME.json
  echo "== $1"
  vfl run "work/jobs/$1.yaml" --config hospital-a/node.yaml --json --json-file "work/results/$1.json" > /dev/null
}
show() {   # show NAME EXPR: print EXPR, a Python f-string over the result r (path(p) shortens a path)
  "$PYTHON" -c "import json, os; r = json.load(open('work/results/$1.json')); path = os.path.relpath
print('  ' + $2)"
}

run psi
show psi "f\"{r['intersection']} patients are at all three (hospital-a keeps the list: {path(r['aligned_ids'])})\""
run train
show train "f\"test accuracy {r['test']['accuracy']:.3f} on {r['split']['test']} patients (3 classes)\""
run evaluate
show evaluate "f\"holdout accuracy {r['metrics']['accuracy']:.3f} ({r['rows']} patients)\""
run predict
show predict "f\"{r['rows']} new patients diagnosed: {path(r['predictions'])}\""
echo "results: work/results/*.json; node logs: work/{hospital-a,lab-b,imaging-c}.log"
