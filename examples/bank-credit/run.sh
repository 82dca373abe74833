#!/usr/bin/env bash
# The bank-credit example end to end, each bank's node its own process: certificates, both nodes, a check of the
# connection, then PSI -> train -> evaluate -> predict with `vfl run` at bank-a, and both nodes stopped again.
#   ./run.sh                 # about a minute on two cores
#   EPOCHS=1 ./run.sh        # quicker (the test suite runs this)
# Everything it writes goes under work/ (jobs from an earlier run are removed first).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
source ./env.sh

rm -rf work/bank-a work/bank-b work/results work/jobs work/nodes.pid
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
start_node() {   # start_node PARTY [VAR=value ...]: the party's node in the background, its output in work/PARTY.log
  local party=$1; shift
  env "$@" "$PYTHON" -m vfl.cli.main serve --config "$party/node.yaml" > "work/$party.log" 2>&1 &
  PIDS+=("$!")
  echo "$!" >> work/nodes.pid
}
start_node bank-a
start_node bank-b "PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH}"   # bank-b's node imports bank_models from here

echo "== waiting for both nodes (vfl doctor: DNS, TCP, TLS identity, health, both ways)"
if ! vfl doctor --config bank-a/node.yaml --wait 60 > work/doctor.txt 2>&1 \
   || ! vfl doctor --config bank-b/node.yaml >> work/doctor.txt 2>&1; then
  cat work/doctor.txt; tail -n 20 work/bank-a.log work/bank-b.log; exit 1
fi
echo "  both nodes are up and accept each other (report: work/doctor.txt)"

run() {   # run NAME: the job spec work/jobs/NAME.yaml at bank-a; its result goes to work/results/NAME.json
  echo "== $1"
  vfl run "work/jobs/$1.yaml" --config bank-a/node.yaml --json --json-file "work/results/$1.json" > /dev/null
}
show() {   # show NAME EXPR: print EXPR, a Python f-string over the result r (path(p) shortens a path at bank-a)
  "$PYTHON" -c "import json, os; r = json.load(open('work/results/$1.json')); path = os.path.relpath
print('  ' + $2)"
}

run psi
show psi "f\"{r['intersection']} customers are at both banks (bank-a keeps the list: {path(r['aligned_ids'])})\""
run train
show train "f\"test AUC {r['test']['auc']:.3f}, accuracy {r['test']['accuracy']:.3f} on {r['split']['test']} customers\""
show train "f\"plots: {path(r['plots']['learning_curves'])}, {path(r['plots']['roc'])}\""
run evaluate
show evaluate "f\"holdout AUC {r['metrics']['auc']:.3f}, accuracy {r['metrics']['accuracy']:.3f} ({r['rows']} customers)\""
run predict
show predict "f\"{r['rows']} applicants scored: {path(r['predictions'])} ({r['unmatched_rows']} not at bank-b)\""

echo "== serve: each bank exports its part of the model; bank-a scores single applicants online"
vfl export banks-train --config bank-a/node.yaml --out work/models/bank-a > /dev/null
vfl export banks-train --config bank-b/node.yaml --out work/models/bank-b > /dev/null
# the node configs register these directories as model `credit` (serving.models); the nodes load them on first use
APPLICANTS=$("$PYTHON" -c "import csv; r = csv.DictReader(open('data/bank-a/applicants.csv')); print(' '.join(next(r)['customer_id'] for _ in range(3)))")
# exit code 1 if an applicant could not be scored (e.g. bank-b holds no account of theirs): shown, not fatal here
vfl score --model credit --config bank-a/node.yaml $APPLICANTS --json --json-file work/results/score.json > /dev/null || true
show score "'; '.join(f\"{x['id']}: \" + (f\"P(default) {x['scores'][0]:.3f}\" if x['status'] == 'ok' else x['status']) for x in r['results'])"
echo "  the same from Python (score.py):"
"$PYTHON" score.py
# job files holding IDs or weights are encrypted at rest: a plaintext copy needs the node's key
vfl at-rest cat work/bank-a/jobs/banks-predict/predictions.csv --config bank-a/node.yaml \
  --out work/results/predictions.csv
echo "  the predictions are encrypted at rest at bank-a; plaintext copy (vfl at-rest cat): work/results/predictions.csv"
echo "results: work/results/*.json; node logs: work/bank-a.log, work/bank-b.log"
