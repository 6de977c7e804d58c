#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned tools modules into a cache
# folder outside the clone, so every clone on this machine shares one build.
# Prints the folder that holds the binaries on its last line.
#
# The folder is keyed by the pinned versions, and an existing binary is
# trusted only when its --version output matches the pin: a half-written or
# hand-copied binary is rebuilt rather than used.
#
# A build reports on stderr what it builds, how long the last build on this
# machine took (recorded as <name>.build-seconds next to the binaries) and,
# every LEASEHOLD_PROGRESS_SECONDS, how long it has been running: the first
# build is silent for many minutes otherwise. Nothing but the folder goes to
# stdout.
#
# internal/controlplane finds the binaries in the same folder when a built
# leasehold runs outside the source tree: a change to the folder's name or
# to the version checks here must be made there too.
#
# Environment:
#   LEASEHOLD_CACHE_DIR         cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/leasehold)
#   LEASEHOLD_ASSETS_DIR        use this folder as is instead of building (must hold both binaries)
#   LEASEHOLD_PROGRESS_SECONDS  how often a long step reports its elapsed time (default 30)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

progress_every="${LEASEHOLD_PROGRESS_SECONDS:-30}"
[[ "$progress_every" =~ ^[1-9][0-9]*$ ]] || { echo "LEASEHOLD_PROGRESS_SECONDS=$progress_every is not a positive whole number of seconds" >&2; exit 1; }

duration() { # seconds -> 45s, 4m30s
	local s=$1
	if ((s < 60)); then echo "${s}s"; else printf '%dm%02ds\n' $((s / 60)) $((s % 60)); fi
}

# ticker prints "still <what>: <elapsed> elapsed<note>" to stderr every
# progress_every seconds until it is killed. It also ends within a second
# of this script's end, however that comes (even SIGKILL), so that it never
# writes into a terminal or a pipe after the script is gone; in a subshell
# $$ is still the script's PID.
ticker() { # what, start (in $SECONDS), note
	local next=$((${2} + progress_every))
	while kill -0 $$ 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)); then
			echo ">> still $1: $(duration $((SECONDS - $2))) elapsed$3" >&2
			next=$((next + progress_every))
		fi
	done
}

ticker_pid=
stop_ticker() {
	if [[ -n "$ticker_pid" ]]; then
		kill "$ticker_pid" 2>/dev/null || true
		wait "$ticker_pid" 2>/dev/null || true
		ticker_pid=
	fi
}
trap stop_ticker EXIT

# with_progress runs a command in the foreground (so that Ctrl-C reaches it
# as usual) while a ticker reports on it; it is silent when the command ends
# within progress_every.
with_progress() { # what, note, command...
	local what=$1 note=$2
	shift 2
	ticker "$what" "$SECONDS" "$note" >&2 &
	ticker_pid=$!
	"$@"
	stop_ticker
}

version_of() { # module dir, module path
	# The first run downloads the tools modules' go.mod files: silent otherwise.
	with_progress "resolving the pinned version of $2 (tools/$1)" "" \
		bash -c 'cd "$1" && go list -m -f "{{.Version}}" "$2"' _ "$root/tools/$1" "$2"
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

# last_build prints how long the last build of a binary took on this
# machine: the record next to the binaries, or else the newest record of
# another version (a version bump builds into a new folder).
last_build() { # name
	local f
	f="$dir/$1.build-seconds"
	if [[ ! -s "$f" ]]; then
		f="$(ls -t "$cache"/controlplane/*/"$1.build-seconds" 2>/dev/null | head -n1 || true)"
	fi
	[[ -n "$f" && -s "$f" ]] || return 0
	local s
	s="$(<"$f")"
	[[ "$s" =~ ^[0-9]+$ ]] || return 0
	if ((s < 60)); then echo "$s s"; else echo "$(((s + 30) / 60)) min"; fi
}

build() { # name, module dir, package, ldflags, how long a first build takes
	local name=$1 mod=$2 pkg=$3 ldflags=$4 first=$5 start=$SECONDS last note
	last="$(last_build "$name")"
	if [[ -n "$last" ]]; then
		echo ">> building $name ($pkg) into $dir; last build took $last" >&2
		note=" (last build took $last)"
	else
		echo ">> building $name ($pkg) into $dir; no earlier build on this machine to compare with; a first build takes $first" >&2
		note=""
	fi
	with_progress "building $name" "$note" \
		bash -c 'cd "$1" && go build -trimpath -ldflags "$2" -o "$3" "$4"' _ "$root/tools/$mod" "$ldflags" "$dir/.$name.tmp" "$pkg"
	mv "$dir/.$name.tmp" "$dir/$name"
	echo "$((SECONDS - start))" >"$dir/.$name.build-seconds.tmp"
	mv "$dir/.$name.build-seconds.tmp" "$dir/$name.build-seconds"
	echo ">> built $name in $(duration $((SECONDS - start)))" >&2
}

apiserver_ok || build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" "10 to 30 minutes on 2 cores"
etcd_ok || build etcd etcd go.etcd.io/etcd/server/v3 "-s -w" "a few minutes"

apiserver_ok || { echo "kube-apiserver in $dir does not report $k8s_version" >&2; exit 1; }
etcd_ok || { echo "etcd in $dir does not report ${etcd_version}" >&2; exit 1; }
echo "$dir"
