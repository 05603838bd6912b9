#!/usr/bin/env bash
# Builds kube-apiserver and etcd for Brindle's Kubernetes integration tests
# from this wrapper module (its own go.mod; k8s.io/kubernetes never enters
# Brindle's go.mod). Binaries go to a cache outside the repository:
#
#   ${BRINDLE_KUBE_CACHE:-/var/cache/brindle/kube}/v1.37.2/{kube-apiserver,etcd}
#
# (when /var/cache is not writable and BRINDLE_KUBE_CACHE is unset:
# ${XDG_CACHE_HOME:-$HOME/.cache}/brindle/kube). A present, matching build is
# kept (0.1 s). A cold build takes about 10 minutes on 2 cores and 3 GB of Go
# build cache. Prints the binaries' folder on its last line; the tests find it
# there, or through BRINDLE_KUBE_BIN.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"

V=v1.37.2
ETCD=v3.7.0
cache=${BRINDLE_KUBE_CACHE:-}
if [ -z "$cache" ]; then
	cache=/var/cache/brindle/kube
	if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
		cache=${XDG_CACHE_HOME:-$HOME/.cache}/brindle/kube
	fi
fi
out=${1:-$cache/$V}
mkdir -p "$out"

have() {
	[ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] &&
		"$out/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $V" &&
		"$out/etcd" --version 2>/dev/null | grep -q "etcd Version: ${ETCD#v}"
}
if have; then
	echo "kube: kube-apiserver $V and etcd $ETCD present" >&2
	echo "$out"
	exit 0
fi

# One set of flags only: CGO_ENABLED, -trimpath and compiler flags are part of
# the Go build cache key, so changing them costs another cold build.
export CGO_ENABLED=0
start=$(date +%s)
echo "kube: building kube-apiserver $V into $out (cold: ~10 min on 2 cores)" >&2
x=k8s.io/component-base/version
go build -trimpath \
	-ldflags "-s -w -X $x.gitVersion=$V -X $x.gitMajor=1 -X $x.gitMinor=37 -X $x.gitTreeState=clean" \
	-o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
echo "kube: building etcd $ETCD" >&2
go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$out/etcd.tmp" "$out/etcd"
have || { echo "kube: built binaries do not report $V / $ETCD" >&2; exit 1; }
echo "kube: built in $(($(date +%s) - start)) s" >&2
echo "$out"
