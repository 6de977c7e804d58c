#!/usr/bin/env bash
# Installs the Debian packages the tests run as real programs:
#   prometheus-alertmanager  a real Alertmanager posting webhooks to the gateways
#   prometheus               promtool, which unit-tests the alerting rules
# It installs only what is missing, so a warm machine pays nothing.
set -euo pipefail

declare -A want=(
	[prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
	[prometheus]=/usr/bin/promtool
)

missing=()
for pkg in "${!want[@]}"; do
	[[ -x "${want[$pkg]}" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || { echo "packages.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	sudo=(sudo)
fi
echo "packages.sh: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
# The packages ship services; nothing here should start them.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
