#!/usr/bin/env bash
# Development certificates for both organizations under work/tls: one CA, one key pair each, named by the identity
# the other's node.yaml expects. Production: each organization's own PKI or cert-manager.
# An existing CA is kept (vfl certs ca refuses to replace one without --force), so this is safe to rerun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./env.sh
if [[ ! -f work/ca/ca.key ]]; then
  vfl certs ca --out work/ca --name "psi-only example CA"
fi
for party in shop-a bank-b; do
  vfl certs issue --ca work/ca --identity "$party" --out "work/tls/$party" > /dev/null
done
echo "certificates in work/tls/shop-a and work/tls/bank-b (CA: work/ca)"
