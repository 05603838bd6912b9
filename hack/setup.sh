#!/usr/bin/env bash
# Installs what Brindle's build, tests and lab need on a fresh Debian machine.
# Safe to run again: it only installs what is missing.
set -euo pipefail

export PATH="$PATH:/usr/local/go/bin"

need=()
for pair in nft:nftables bird:bird2 ip:iproute2 iperf3:iperf3; do
	cmd=${pair%%:*} pkg=${pair##*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: missing ${need[*]} and not root; privileged tests will skip" >&2
	else
		echo "setup: installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq "${need[@]}" >/dev/null
	fi
fi

if ! command -v go >/dev/null 2>&1; then
	echo "setup: Go is not installed (expected at /usr/local/go)" >&2
	exit 1
fi
cd "$(dirname "$0")/.."
go mod download
# kube-apiserver + etcd for the Kubernetes tests (cold ~10 min, then cached
# outside the repo): only the tests need them (hack/test.sh sets
# BRINDLE_WITH_KUBE=1), not the demo.
if [ "${BRINDLE_WITH_KUBE:-}" = 1 ] && [ "${BRINDLE_SKIP_KUBE:-}" != 1 ]; then
	bash hack/kube/build.sh >/dev/null
fi
