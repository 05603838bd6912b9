#!/usr/bin/env bash
# The main job, as far as it is built today: a real etcd datastore, the talk's
# policy applied verbatim in its 2017 v1 form, and the reachability it gives,
# worked out by Brindle's reference evaluator. The multi-host lab (real
# packets between hosts) replaces the evaluator here once it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh >/dev/null

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building brindle and brindlectl"
go build -o bin/ ./cmd/brindle ./cmd/brindlectl

work=$(mktemp -d)
port=$((23790 + RANDOM % 1000))
export BRINDLE_ETCD_ENDPOINTS="http://127.0.0.1:$port"
cleanup() {
	[ -n "${ds:-}" ] && kill "$ds" 2>/dev/null && wait "$ds" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "Starting the datastore: one embedded etcd member on 127.0.0.1:$port"
bin/brindle datastore --data-dir "$work/etcd" \
	--listen-client-url "http://127.0.0.1:$port" \
	--listen-peer-url "http://127.0.0.1:$((port + 1000))" >"$work/datastore.log" 2>&1 &
ds=$!
for _ in $(seq 50); do bin/brindlectl get gnp >/dev/null 2>&1 && break; sleep 0.2; done

step "Three workloads, no policy: every namespace's profile allows everything"
sed -n '/^pods:/,/^probes:/p' examples/talk/scenario-open.yaml | sed '$d'
bin/brindlectl policy check -f examples/talk/scenario-open.yaml

step "The talk's policy, verbatim in the 2017 v1 format"
cat examples/talk/allow-tcp-6379.yaml
bin/brindlectl apply -f examples/talk/allow-tcp-6379.yaml

step "Stored as a projectcalico.org/v3 GlobalNetworkPolicy that applies to both directions"
bin/brindlectl get globalnetworkpolicy allow-tcp-6379 -o yaml

step "Reachability with the policy: only PCI frontends reach the database, only on 6379"
bin/brindlectl policy check -f examples/talk/scenario-pci.yaml

step "Why is other -> database:6379 denied?"
bin/brindlectl policy check -f examples/talk/scenario-pci.yaml --explain shop/other shop/database 6379/TCP

step "Done: the datastore is stopped and its data removed"
