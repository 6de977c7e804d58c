#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned tools modules into a cache
# folder outside the clone, so every clone on this machine shares one build.
# Prints the folder that holds the binaries on its last line.
#
# The folder is keyed by the pinned versions, and an existing binary is
# trusted only when its --version output matches the pin: a half-written or
# hand-copied binary is rebuilt rather than used.
#
# Environment:
#   LEASEHOLD_CACHE_DIR      cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/leasehold)
#   LEASEHOLD_ASSETS_DIR     use this folder as is instead of building (must hold both binaries)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

version_of() { # module dir, module path
	(cd "$root/tools/$1" && go list -m -f '{{.Version}}' "$2")
}

if [[ -n "${LEASEHOLD_ASSETS_DIR:-}" ]]; then
	for b in kube-apiserver etcd; do
		[[ -x "$LEASEHOLD_ASSETS_DIR/$b" ]] || { echo "LEASEHOLD_ASSETS_DIR=$LEASEHOLD_ASSETS_DIR has no executable $b" >&2; exit 1; }
	done
	echo "$LEASEHOLD_ASSETS_DIR"
	exit 0
fi

k8s_version="$(version_of kube-apiserver k8s.io/kubernetes)"
etcd_version="$(version_of etcd go.etcd.io/etcd/server/v3)"
cache="${LEASEHOLD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/leasehold}"
dir="$cache/controlplane/kubernetes-$k8s_version-etcd-$etcd_version"
mkdir -p "$dir"

# The linker stamps these so that --version reports the pin; without them the
# API server calls itself v0.0.0 and the version check below could not work.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"

# The output is captured before matching: piping into grep -q would let grep
# exit early, and under pipefail the writer's SIGPIPE would read as a mismatch.
apiserver_ok() {
	[[ -x "$dir/kube-apiserver" ]] || return 1
	local out
	out="$("$dir/kube-apiserver" --version 2>/dev/null)" || return 1
	[[ "$out" == "Kubernetes $k8s_version" ]]
}
etcd_ok() {
	[[ -x "$dir/etcd" ]] || return 1
	local out
	out="$("$dir/etcd" --version 2>/dev/null)" || return 1
	[[ "$(head -n1 <<<"$out")" == "etcd Version: ${etcd_version#v}" ]]
}

build() { # name, module dir, package, ldflags
	local name=$1 mod=$2 pkg=$3 ldflags=$4 start=$SECONDS
	echo ">> building $name ($pkg) into $dir; the first build takes minutes" >&2
	(cd "$root/tools/$mod" && go build -trimpath -ldflags "$ldflags" -o "$dir/.$name.tmp" "$pkg")
	mv "$dir/.$name.tmp" "$dir/$name"
	echo ">> built $name in $((SECONDS - start)) s" >&2
}

apiserver_ok || build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
etcd_ok || build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"

apiserver_ok || { echo "kube-apiserver in $dir does not report $k8s_version" >&2; exit 1; }
etcd_ok || { echo "etcd in $dir does not report ${etcd_version}" >&2; exit 1; }
echo "$dir"
