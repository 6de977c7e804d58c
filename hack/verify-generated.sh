#!/usr/bin/env bash
# Fails when the generated deepcopy functions or CRD YAML do not match the
# API types. It regenerates in place, so a developer who sees the failure
# only has to review and commit the result.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

snapshot() { find api config/crd -type f \( -name 'zz_generated*.go' -o -name '*.yaml' \) -print0 | sort -z | xargs -0 sha256sum; }

before="$(snapshot)"
make --no-print-directory generate >/dev/null
after="$(snapshot)"
if [[ "$before" != "$after" ]]; then
	echo "generated files were stale and have been regenerated; review and commit them:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	exit 1
fi
echo "generated files are up to date"
