#!/usr/bin/env bash
# Development certificates for both banks under work/tls: one CA, one key pair per bank, each named by the identity
# its peer's node.yaml expects. Production: each bank's own PKI or cert-manager (docs/deploy.md).
# An existing CA is kept (vfl certs ca refuses to replace one without --force), so this is safe to rerun.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./env.sh
if [[ ! -f work/ca/ca.key ]]; then
  vfl certs ca --out work/ca --name "banks example CA"
fi
for bank in bank-a bank-b; do
  vfl certs issue --ca work/ca --identity "$bank" --out "work/tls/$bank" > /dev/null
done
echo "certificates in work/tls/bank-a and work/tls/bank-b (CA: work/ca)"
