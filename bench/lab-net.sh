#!/usr/bin/env bash
# Lab network benchmarks (issue 7, "Numbers"). Needs root, iperf3 and nft
# (hack/setup.sh installs them). One command:
#
#   bash bench/lab-net.sh [RESULTS_FILE]      (RUNS=5 REACH=20 by default)
#
# Builds three setups side by side and measures them round-robin (a, b, c,
# a, b, c, ...) so a change in the machine's load hits all three alike:
#   a  plain routed namespaces, no Brindle: two hosts on two subnets joined
#      by a router with two bridges (the lab's fabric and addresses), a pod
#      on each host as a veth with a /32, 169.254.1.1 as its gateway and
#      proxy ARP on the host side (what the CNI plugin does), static routes.
#   b  a Brindle lab (`brindle lab up --hosts 2`), pods through CNI, no
#      policy (the namespace profile allows everything).
#   c  the same with 1,000 GlobalNetworkPolicies that all select the pods
#      (bench == 'on'), orders 0..999, each with one ingress and one egress
#      Allow rule for TCP port 10000+i; only the last also allows the
#      benchmark ports (5201 iperf3, 5001 netbench). The tier is reached
#      through its tier index (dataplane/nft), so a new connection visits
#      the one policy for its port at egress on host1 and at ingress on
#      host2 (before the index, commit d608b00 and earlier, it walked all
#      1,000 policy chains).
# Client pod on host1 (subnet A), server pod on host2 (subnet B): every
# packet crosses host1, the router and host2.
#
# Measurements, each RUNS times per setup, with `uptime`'s load:
#   throughput  iperf3 -t 10, one TCP flow, receiver Mbit/s
#   connrate    netbench rate: short connections (connect, 1 byte each
#               way, RST) for 5 s with 4 workers, connections/s
#   reach       b and c: REACH times, `brindle lab pod add` of a pod on
#               host1 while a prober in the host2 pod tries a TCP connect to
#               its address every 5 ms; ms from the pod's netns appearing
#               (the CNI ADD starts right after) and from the command's
#               start until the first answer.
# Raw lines and medians go to RESULTS_FILE (default
# /tmp/brindle-lab-net-<time>.txt) and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
RUNS=${RUNS:-5}
REACH=${REACH:-20}
IPERF_SECONDS=${IPERF_SECONDS:-10}
RATE_SECONDS=${RATE_SECONDS:-5}
out=${1:-/tmp/brindle-lab-net-$(date -u +%Y%m%dT%H%M%SZ).txt}
[[ $(id -u) -eq 0 ]] || { echo "lab-net: needs root" >&2; exit 1; }
for c in iperf3 nft ip; do command -v $c >/dev/null || { echo "lab-net: $c missing (bash hack/setup.sh)" >&2; exit 1; }; done

tmp=$(mktemp -d)
id=$((RANDOM % 10000))
A=bna$id            # baseline namespace prefix
LB=bnb$id LC=bnc$id # lab names
pids=()
cleanup() {
  local rc=$?
  set +e
  if [[ $rc -ne 0 ]]; then # keep the nodes' logs of a failed run
    for l in "$LB" "$LC"; do
      for f in /run/brindle-lab/"$l"/host*/node.log; do
        [[ -f $f ]] && cp "$f" "${out%.txt}-$l-$(basename "$(dirname "$f")").log"
      done
    done
    echo "lab-net: failed; node logs kept as ${out%.txt}-*.log" >&2
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for n in r h1 h2 p1 p2; do ip netns del "$A-$n" 2>/dev/null; done
  for l in "$LB" "$LC"; do "$tmp/brindle" lab down --name "$l" >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building..." >&2
go build -o "$tmp/" ./cmd/brindle ./cmd/brindle-cni ./cmd/brindlectl
go build -o "$tmp/netbench" ./bench/netbench
B="$tmp/brindle"

log() { echo "$*" | tee -a "$out"; }
load() { uptime | sed 's/.*load average: //'; }
: >"$out"
log "# lab-net $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus runs=$RUNS iperf=${IPERF_SECONDS}s rate=${RATE_SECONDS}s"

# --- a: plain routed namespaces -------------------------------------------
n() { ip netns exec "$@"; }
for x in r h1 h2 p1 p2; do ip netns add "$A-$x"; ip -n "$A-$x" link set lo up; done
n "$A-r" sysctl -qw net.ipv4.ip_forward=1
ip -n "$A-r" link add sa type bridge; ip -n "$A-r" addr add 172.30.1.1/24 dev sa; ip -n "$A-r" link set sa up
ip -n "$A-r" link add sb type bridge; ip -n "$A-r" addr add 172.30.2.1/24 dev sb; ip -n "$A-r" link set sb up
hostaddr=(x 172.30.1.11 172.30.2.12) br=(x sa sb) gw=(x 172.30.1.1 172.30.2.1) podaddr=(x 10.244.1.1 10.244.2.1)
for i in 1 2; do
  h="$A-h$i" p="$A-p$i"
  ip -n "$A-r" link add "h$i" type veth peer name eth0 netns "$h"
  ip -n "$A-r" link set "h$i" master "${br[i]}"; ip -n "$A-r" link set "h$i" up
  ip -n "$h" addr add "${hostaddr[i]}/24" dev eth0; ip -n "$h" link set eth0 up
  ip -n "$h" route add default via "${gw[i]}"
  n "$h" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$h" link add "cali$i" type veth peer name eth0 netns "$p"
  n "$h" sysctl -qw "net.ipv4.conf.cali$i.proxy_arp=1" "net.ipv4.neigh.cali$i.proxy_delay=0"
  ip -n "$h" link set "cali$i" up
  ip -n "$h" route add "${podaddr[i]}/32" dev "cali$i" scope link
  ip -n "$p" addr add "${podaddr[i]}/32" dev eth0; ip -n "$p" link set eth0 up
  ip -n "$p" route add 169.254.1.1 dev eth0 scope link
  ip -n "$p" route add default via 169.254.1.1
  ip -n "$A-r" route add "${podaddr[i]%.*}.0/26" via "${hostaddr[i]}"
done
declare -A cli srv srvip
cli[a]="$A-p1" srv[a]="$A-p2" srvip[a]=10.244.2.1

# --- b and c: two labs, each with its own datastore -----------------------
policies() {
  for i in $(seq 0 999); do
    ports="[$((10000 + i))]"
    [[ $i -eq 999 ]] && ports="[$((10000 + i)), 5201, 5001]"
    printf -- '---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bench-%04d}\nspec:\n  order: %d\n  selector: "bench == '"'"'on'"'"'"\n  types: [Ingress, Egress]\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: %s}}]\n  egress: [{action: Allow, protocol: TCP, destination: {ports: %s}}]\n' \
      "$i" "$i" "$ports" "$ports"
  done
}
for s in b c; do
  l=$LB; [[ $s == c ]] && l=$LC
  "$B" lab up --hosts 2 --name "$l" >/dev/null
  cli[$s]="$l-pod-bench-cli" srv[$s]="$l-pod-bench-srv"
  "$B" lab pod add bench/cli --name "$l" --host 1 --labels bench=on >/dev/null
  srvip[$s]=$("$B" lab pod add bench/srv --name "$l" --host 2 --labels bench=on | awk '{print $NF}')
done
policies >"$tmp/policies.yaml"
eval "$("$B" lab env --name "$LC")"
t0=$(date +%s.%N)
"$tmp/brindlectl" apply -f "$tmp/policies.yaml" >/dev/null
# Ready: the classify table sends the pod's interface to a class, and the
# policy table reaches all 1,000 policy chains of that direction (jumps
# from the class chain when the tier is walked linearly; from the tier
# index, a goto in its port map for a range only one policy matches and
# jumps from list chains otherwise).
chains_ready() {
  local h=$1 dir=$2 ifc map=brindle-to-wl pol=pi
  ifc=$(ip -n "$LC-$h" -o link | grep -o 'cali[0-9a-f]*' | head -1)
  [[ $dir == egress ]] && map=brindle-from-wl pol=po
  # (grep -c, not -q: under pipefail, -q's early exit fails nft with SIGPIPE)
  [[ $(n "$LC-$h" nft list map inet brindle-classify "$map" 2>/dev/null | grep -c "\"$ifc\"") -ge 1 ]] &&
    [[ $(n "$LC-$h" nft list table inet brindle 2>/dev/null | grep -oE "(jump|goto) brindle-$pol-[0-9a-f]+" | awk '{print $2}' | sort -u | wc -l) -ge 1000 ]]
}
for _ in $(seq 600); do
  chains_ready host2 ingress && chains_ready host1 egress && break
  sleep 0.2
done
chains_ready host2 ingress && chains_ready host1 egress || { echo "lab-net: 1,000 policies not programmed within 120 s" >&2; exit 1; }
log "# c: 1000 policies applied and programmed on both hosts in $(echo "$(date +%s.%N) - $t0" | bc) s"
for h in host1 host2; do
  log "# c: $h nft: $(n "$LC-$h" nft list table inet brindle | grep -c '^\s*chain ') chains, $(n "$LC-$h" nft list table inet brindle | grep -cE '^\s+(ip|meta|th|jump|goto|ct|iifname|oifname|drop|accept|return|log|counter)') rules"
done

# Started with `ip netns exec` itself (not through a function) so that $!
# is the server's own PID and the cleanup's kill reaches it.
for s in a b c; do ip netns exec "${srv[$s]}" iperf3 -s -p 5201 >/dev/null 2>&1 & pids+=($!); done
for s in a b c; do ip netns exec "${srv[$s]}" "$tmp/netbench" serve -listen :5001 & pids+=($!); done
# Per-namespace: more ephemeral ports for the connection-rate client.
for s in a b c; do n "${cli[$s]}" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"; done
sleep 1
# Policy check in c: an unlisted port must be dropped, the benchmark ports allowed.
if n "${cli[c]}" timeout 3 bash -c "exec 3<>/dev/tcp/${srvip[c]}/7777" 2>/dev/null; then
  echo "lab-net: c: port 7777 answered: the policies do not apply" >&2; exit 1
fi
n "${cli[c]}" "$tmp/netbench" rate -to "${srvip[c]}:5001" -duration 1s -workers 1 >/dev/null
log "# c: port 7777 dropped, 5001 allowed (the last policy): the policies apply"

declare -A tp cr
for r in $(seq "$RUNS"); do
  for s in a b c; do
    v=$(n "${cli[$s]}" iperf3 -c "${srvip[$s]}" -p 5201 -t "$IPERF_SECONDS" -f m | awk '/receiver/ {print $(NF-2)}')
    tp[$s]+="$v "
    log "setup=$s metric=throughput run=$r mbit_s=$v load=\"$(load)\""
  done
  for s in a b c; do
    v=$(n "${cli[$s]}" "$tmp/netbench" rate -to "${srvip[$s]}:5001" -duration "${RATE_SECONDS}s" -workers 4)
    rv=${v##*rate=}
    cr[$s]+="$rv "
    log "setup=$s metric=connrate run=$r conns_s=$rv ($v) load=\"$(load)\""
  done
done

# --- PERF=1: where a new connection's CPU goes (b and c) -------------------
# perf samples every CPU at 2 kHz while netbench rate runs; nftables time
# per connection = samples in nft_* symbols / 2000 Hz / connections.
if [[ ${PERF:-0} == 1 ]]; then
  for s in b c; do
    perf record -a -F 2000 -o "$tmp/perf.$s" -- \
      ip netns exec "${cli[$s]}" "$tmp/netbench" rate -to "${srvip[$s]}:5001" -duration "${RATE_SECONDS}s" -workers 4 >"$tmp/perf.$s.out" 2>/dev/null
    conns=$(grep -o 'conns=[0-9]*' "$tmp/perf.$s.out" | cut -d= -f2)
    perf report -i "$tmp/perf.$s" -n --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$tmp/perf.$s.txt"
    read -r total nft nftpct < <(awk '{t+=$2} /\[k\] (nft_|nf_tables|__nft)/ {n+=$2; gsub("%","",$1); p+=$1} END {printf "%d %d %.1f\n", t, n, p}' "$tmp/perf.$s.txt")
    log "perf setup=$s conns=$conns samples=$total nft_samples=$nft nft_pct=$nftpct nft_us_per_conn=$(echo "scale=2; $nft * 500 / $conns" | bc) load=\"$(load)\""
    head -15 "$tmp/perf.$s.txt" | sed "s/^/perf setup=$s top: /" | tee -a "$out"
  done
fi

# --- reach: pod ADD on host1 until the host2 pod reaches it ----------------
declare -A rw rc
for s in b c; do
  l=$LB; [[ $s == c ]] && l=$LC
  cliip=$("$B" lab pod list --name "$l" | awk '$1 == "bench/cli" {print $3}')
  base=${cliip%.*}.$(( ${cliip##*.} & ~63 ))
  # host1's route and neighbour (ARP) events, timestamped, to see where a
  # slow ADD-to-reachable went.
  ip -n "$l-host1" -ts monitor route neigh >"${out%.txt}-monitor-$s.txt" 2>&1 &
  mon=$!
  pids+=($mon)
  for r in $(seq "$REACH"); do
    ip4=${base%.*}.$(( ${base##*.} + 20 + r % 40 ))
    ns=$l-pod-bench-r$r
    ip netns exec "${srv[$s]}" "$tmp/netbench" reach -to "$ip4:5001" -watch "/run/netns/$ns" -timeout 20s >"$tmp/reach" &
    pr=$!
    sleep 0.2
    start=$(date +%s%N)
    "$B" lab pod add "bench/r$r" --name "$l" --host 1 --ip "$ip4" --labels bench=on >/dev/null
    done_=$(date +%s%N)
    wait "$pr"
    read -r w t < <(sed 's/watch_ns=\([0-9]*\) reach_ns=\([0-9]*\)/\1 \2/' "$tmp/reach")
    fw=$(( (t - w) / 1000000 )) fc=$(( (t - start) / 1000000 ))
    rw[$s]+="$fw " rc[$s]+="$fc "
    log "setup=$s metric=reach run=$r ip=$ip4 netns_at=$(date -u -d @"${w:0:10}.${w:10:3}" +%T.%3N) reach_at=$(date -u -d @"${t:0:10}.${t:10:3}" +%T.%3N) from_netns_ms=$fw from_command_ms=$fc command_ms=$(( (done_ - start) / 1000000 )) load=\"$(load)\""
    "$B" lab pod del "bench/r$r" --name "$l" >/dev/null
  done
  kill "$mon" 2>/dev/null || true
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
pct() { tr ' ' '\n' | grep . | sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
log "# medians"
for s in a b c; do
  log "median setup=$s throughput_mbit_s=$(echo "${tp[$s]}" | median) connrate_conns_s=$(echo "${cr[$s]}" | median)"
done
log "ratio c/b throughput=$(echo "scale=3; $(echo "${tp[c]}" | median) / $(echo "${tp[b]}" | median)" | bc) connrate=$(echo "scale=3; $(echo "${cr[c]}" | median) / $(echo "${cr[b]}" | median)" | bc)"
log "ratio b/a throughput=$(echo "scale=3; $(echo "${tp[b]}" | median) / $(echo "${tp[a]}" | median)" | bc) connrate=$(echo "scale=3; $(echo "${cr[b]}" | median) / $(echo "${cr[a]}" | median)" | bc)"
for s in b c; do
  log "reach setup=$s from_netns_ms p50=$(echo "${rw[$s]}" | pct 50) p99=$(echo "${rw[$s]}" | pct 99) max=$(echo "${rw[$s]}" | pct 100); from_command_ms p50=$(echo "${rc[$s]}" | pct 50) p99=$(echo "${rc[$s]}" | pct 99)"
done
echo "results in $out" >&2
