#!/usr/bin/env bash
# Builds a pinned Go tool from its tools module into the per-user cache and
# prints its path. The binary name carries the version, so changing the pin
# in tools/<module>/go.mod builds a new one instead of reusing a stale one.
#
# usage: hack/tools.sh controller-gen|kustomize
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LEASEHOLD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/leasehold}/bin"

case "${1:-}" in
controller-gen) mod=controller-gen module=sigs.k8s.io/controller-tools pkg=sigs.k8s.io/controller-tools/cmd/controller-gen ;;
kustomize) mod=kustomize module=sigs.k8s.io/kustomize/kustomize/v5 pkg=sigs.k8s.io/kustomize/kustomize/v5 ;;
*) echo "usage: $0 controller-gen|kustomize" >&2; exit 2 ;;
esac

version="$(cd "$root/tools/$mod" && go list -m -f '{{.Version}}' "$module")"
bin="$cache/$1-$version"
if [[ ! -x "$bin" ]]; then
	mkdir -p "$cache"
	echo ">> building $1 $version" >&2
	(cd "$root/tools/$mod" && go build -o "$bin.tmp" "$pkg")
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
