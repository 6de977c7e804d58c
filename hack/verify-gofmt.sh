#!/usr/bin/env bash
# Fails when any Go file in the tree, tools modules included, is not gofmt-clean.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bad="$(gofmt -l $(git ls-files --cached --others --exclude-standard -- '*.go'))"
if [[ -n "$bad" ]]; then
	echo "gofmt needed on:" >&2
	echo "$bad" >&2
	exit 1
fi
