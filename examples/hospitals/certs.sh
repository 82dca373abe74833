#!/usr/bin/env bash
# Development certificates for the three organizations under work/tls: one CA, one key pair each, named by the
# identity the peers' node.yaml files expect. Production: each organization's own PKI or cert-manager.
# An existing CA is kept (vfl certs ca refuses to replace one without --force), so this is safe to rerun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./env.sh
if [[ ! -f work/ca/ca.key ]]; then
  vfl certs ca --out work/ca --name "hospitals example CA"
fi
for party in hospital-a lab-b imaging-c; do
  vfl certs issue --ca work/ca --identity "$party" --out "work/tls/$party" > /dev/null
done
echo "certificates in work/tls/{hospital-a,lab-b,imaging-c} (CA: work/ca)"
