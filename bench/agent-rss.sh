#!/usr/bin/env bash
# Measures the idle RSS of `brindle node` with a small cluster: an embedded
# datastore on loopback, 20 workload endpoints (5 on this node), their
# profiles and 10 policies; the agent programs a throwaway network namespace.
# Needs root. Prints VmRSS and VmHWM of the agent after it is in sync and
# programmed and has idled for a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
ns="brt-rss-$$"
cleanup() {
  [[ -n "${agent:-}" ]] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
  [[ -n "${ds:-}" ]] && kill "$ds" 2>/dev/null && wait "$ds" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/brindle" ./cmd/brindle
go build -o "$tmp/brindlectl" ./cmd/brindlectl
port=$((20000 + RANDOM % 20000))
"$tmp/brindle" datastore --data-dir "$tmp/etcd" --listen-client-url "http://127.0.0.1:$port" \
  --listen-peer-url "http://127.0.0.1:$((port + 1))" 2>"$tmp/ds.log" &
ds=$!
export BRINDLE_ETCD_ENDPOINTS="http://127.0.0.1:$port"
for _ in $(seq 50); do "$tmp/brindlectl" get profiles >/dev/null 2>&1 && break; sleep 0.2; done
{
  for ns_ in a b; do
    printf -- '---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.%s}\nspec: {ingress: [{action: Allow}], egress: [{action: Allow}]}\n' "$ns_"
  done
  for i in $(seq 0 19); do
    node=other; [[ $i -lt 5 ]] && node=rss-node
    printf -- '---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {namespace: a, labels: {app: app%d}}\nspec: {node: %s, orchestrator: k8s, pod: pod-%d, endpoint: eth0, interfaceName: cali%04d, ipNetworks: [10.70.0.%d/32], profiles: [kns.a]}\n' \
      $((i % 4)) "$node" "$i" "$i" $((i + 1))
  done
  for i in $(seq 0 9); do
    printf -- '---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: pol-%d}\nspec: {order: %d, selector: "app == '"'"'app%d'"'"'", ingress: [{action: Allow, protocol: TCP, source: {selector: "app == '"'"'app%d'"'"'"}, destination: {ports: [80]}}]}\n' \
      "$i" "$i" $((i % 4)) $(((i + 1) % 4))
  done
} >"$tmp/world.yaml"
"$tmp/brindlectl" apply -f "$tmp/world.yaml" >/dev/null
ip netns add "$ns"
"${BRINDLE_RSS_BIN:-$tmp/brindle}" node --hostname rss-node --netns "/run/netns/$ns" --socket "$tmp/agent.sock" \
  --config-file "" 2>"$tmp/agent.log" &
agent=$!
for _ in $(seq 100); do
  curl -s --unix-socket "$tmp/agent.sock" http://agent/readyz 2>/dev/null | grep -q ok && break
  sleep 0.1
done
curl -sf --unix-socket "$tmp/agent.sock" http://agent/v1/status || { echo "agent not answering; its log:"; cat "$tmp/agent.log"; exit 1; }
echo
sleep 5
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$agent/status"
