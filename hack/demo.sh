#!/usr/bin/env bash
# `make demo`: Brindle's main job, on one machine, with real packets.
#
# Builds a three-host network out of Linux network namespaces, puts a
# frontend, a database and another workload on different hosts, shows who
# can reach whom, applies the talk's policy (verbatim, 2017 Calico v1
# format), shows it again, then the BGP sessions and routes that carry the
# traffic between hosts, and tears everything down. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "make demo needs root: it creates network namespaces, veths and routes (try: sudo make demo)" >&2
	exit 1
fi

bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'
[ -t 1 ] || bold='' dim='' off=''
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '%s\n' "$*" | fold -s -w 78; }
run() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; "$@"; }

LAB=demo
export PATH="$PWD/bin:/usr/local/go/bin:$PATH"

step "Installing what the demo needs (Debian packages, Go modules) and building"
bash hack/setup.sh >/dev/null
run go build -o bin/ ./cmd/brindle ./cmd/brindle-cni ./cmd/brindlectl

# A demo interrupted earlier may have left its lab behind.
brindle lab down --name "$LAB" >/dev/null 2>&1 || true
cleanup() {
	step "Tearing down: every namespace, process and file of the lab goes"
	run brindle lab down --name "$LAB"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "1. Three hosts on a routed network"
say "Brindle gives every workload (a container, a VM, a process) its own IP address on one flat, routed network: no bridges between hosts, no overlay, no NAT. Each host is a router. Here each 'host' is a network namespace on this machine; hosts 1 and 3 sit on subnet 172.30.1.0/24, host 2 on 172.30.2.0/24, and a router joins the two. Every host runs 'brindle node', the agent that programs the kernel (nftables for policy, routes for traffic); one etcd datastore holds the configuration."
run brindle lab up --name "$LAB" --hosts 3
eval "$(brindle lab env --name "$LAB")"

step "2. Three workloads, each on a different host"
say "Workloads are created through Brindle's CNI plugin, as Kubernetes or any container runtime would. Each gets an address from Brindle's IPAM, which hands every host its own block of addresses (a /26). Labels say what a workload is; policy will select workloads by label, never by address."
run brindle lab pod add shop/frontend --name "$LAB" --host 1 --labels role=frontend,compliance=PCI
run brindle lab pod add shop/database --name "$LAB" --host 2 --labels role=database,compliance=PCI
run brindle lab pod add shop/other --name "$LAB" --host 3 --labels role=other
run brindle lab pod list --name "$LAB"

step "3. Who can reach whom, with no policy"
say "Each cell is a real TCP connection from the row's workload to the column's, on port 6379 (Redis) and port 80. With no policy, the namespace's default profile allows everything: A everywhere."
run brindle lab matrix --name "$LAB" --ports 6379,80

step "4. The talk's policy, verbatim, in the 2017 Calico v1 format"
say "The PCI database accepts only PCI frontends, and only on TCP 6379. The selectors match labels, so the rule follows the workloads wherever they run and whatever address they get."
run cat examples/talk/allow-tcp-6379.yaml
run brindlectl apply -f examples/talk/allow-tcp-6379.yaml

step "5. Who can reach whom now"
say "Only shop/frontend (role=frontend, compliance=PCI) reaches shop/database, and only on 6379. shop/other is refused on both ports, and so is the frontend on 80. Nothing else changed: the policy selects only the database. The database's host (host 2) enforces it in its own kernel, on packets that came over the routed network from hosts 1 and 3; every host has the rules for the workloads it runs."
run brindle lab matrix --name "$LAB" --ports 6379,80

step "6. How the hosts learn where workloads are: BGP"
say "Every host runs a BGP speaker and peers with every other host (a full mesh; the router joins the mesh so it can forward between the two subnets). Each host announces only its own address blocks: one route per block, not one per workload."
for h in 1 2 3; do
	run brindlectl node status --socket "/run/brindle-lab/$LAB/host$h/agent.sock"
	echo
done

step "7. The kernel routing tables"
say "On each host: the local workloads' /32 routes (proto 98, to their veth), a blackhole for the host's own block, and one route per remote block learned by BGP (proto 99, shown by ip as 'openr'). Hosts on the same subnet route straight to each other; host 2 goes through the router."
for h in 1 2 3; do
	echo "host$h:"
	run ip -n "$LAB-host$h" route
	echo
done
echo "router:"
run ip -n "$LAB-router" route

say ""
say "Next: 'brindle lab run examples/talk/scenario-pci.yaml' checks a whole scenario's expectations on real packets, and 'brindlectl policy check -f ...' on the reference evaluator, without a lab. See docs/lab.md."
