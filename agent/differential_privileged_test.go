package agent

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/policy/scenario"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"time"
)

var diffSeed = flag.Uint64("seed", 0, "differential test: run only this seed (also env BRINDLE_DIFF_SEED)")

// diffSeeds are the seeds CI runs.
var diffSeeds = []uint64{1, 2, 3, 4, 5, 6}

// diffPorts are served by every generated pod and probed between every pair.
var diffPorts = []string{"80/TCP", "8080/TCP", "53/UDP"}

// genScenario builds a random but reproducible scenario: six pods in two
// namespaces with labels over a few keys, and a handful of policies with
// random selectors, tiers, orders, actions (Allow, Deny, Pass, Log),
// protocols, ports (numeric and named) and nets.
func genScenario(seed uint64) *scenario.Scenario {
	r := rand.New(rand.NewPCG(seed, 0x62726e646c65))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	s := &scenario.Scenario{
		Name: fmt.Sprintf("generated-seed-%d", seed),
		Namespaces: map[string]scenario.Namespace{
			"ns1": {Labels: map[string]string{"env": "prod"}},
			"ns2": {Labels: map[string]string{"env": "dev"}},
		},
	}
	for i := range 6 {
		labels := map[string]string{}
		if v := pick("web", "db", "cache", ""); v != "" {
			labels["app"] = v
		}
		if v := pick("fe", "be", ""); v != "" {
			labels["tier"] = v
		}
		// Namespaces and addresses are fixed per pod so that seeds can
		// reuse the lab's workloads; labels and named ports vary.
		p := scenario.Pod{Namespace: []string{"ns1", "ns2"}[i%2], Name: fmt.Sprintf("p%d", i), Labels: labels,
			IP: fmt.Sprintf("10.65.0.%d", i+1)}
		if r.IntN(2) == 0 {
			p.Ports = []scenario.PodPort{{Port: 8080, Protocol: "TCP", Name: "http"}}
		}
		s.Pods = append(s.Pods, p)
	}
	selectors := []string{"all()", "app == 'web'", "app == 'db'", "app in {'web', 'cache'}", "has(tier)", "!has(tier)",
		"tier == 'be' && app != 'db'", "app == 'web' || tier == 'fe'"}
	rule := func() map[string]any {
		ru := map[string]any{"action": pick("Allow", "Allow", "Deny", "Pass", "Log")}
		proto := pick("", "TCP", "UDP")
		if proto != "" {
			ru["protocol"] = proto
		}
		src, dst := map[string]any{}, map[string]any{}
		switch r.IntN(5) {
		case 0:
			src["selector"] = pick(selectors...)
		case 1:
			src["namespaceSelector"] = pick("env == 'dev'", "env == 'prod'")
		case 2:
			src["nets"] = []string{pick("10.65.0.0/30", "10.65.0.4/32", "10.65.0.0/29", "192.0.2.0/24")}
		case 3:
			src["notSelector"] = pick(selectors...)
		}
		if proto == "TCP" {
			switch r.IntN(3) {
			case 0:
				dst["ports"] = []any{80}
			case 1:
				dst["ports"] = []any{"http"}
			}
		} else if proto == "UDP" && r.IntN(2) == 0 {
			dst["ports"] = []any{53}
		}
		if len(src) > 0 {
			ru["source"] = src
		}
		if len(dst) > 0 {
			ru["destination"] = dst
		}
		return ru
	}
	var docs []map[string]any
	usesTier := false
	for i := range 2 + r.IntN(4) {
		spec := map[string]any{"selector": pick(selectors...)}
		if r.IntN(4) > 0 {
			spec["order"] = []float64{1, 5, 10, 20}[r.IntN(4)]
		}
		var in, eg []any
		for range r.IntN(3) {
			in = append(in, rule())
		}
		for range r.IntN(2) {
			eg = append(eg, rule())
		}
		if in != nil {
			spec["ingress"] = in
		}
		if eg != nil {
			spec["egress"] = eg
		}
		types := []string{}
		if in != nil || r.IntN(3) == 0 {
			types = append(types, "Ingress")
		}
		if eg != nil {
			types = append(types, "Egress")
		}
		if len(types) == 0 {
			types = append(types, "Ingress")
		}
		spec["types"] = types
		name := fmt.Sprintf("p%d", i)
		meta := map[string]any{}
		kind := "GlobalNetworkPolicy"
		if r.IntN(2) == 0 {
			kind = "NetworkPolicy"
			meta["namespace"] = pick("ns1", "ns2")
		}
		if r.IntN(3) == 0 {
			usesTier = true
			spec["tier"] = "t1"
			name = "t1." + name
		}
		meta["name"] = name
		docs = append(docs, map[string]any{"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})
	}
	if usesTier {
		docs = append([]map[string]any{{"apiVersion": "projectcalico.org/v3", "kind": "Tier",
			"metadata": map[string]any{"name": "t1"}, "spec": map[string]any{"order": 5}}}, docs...)
	}
	for _, d := range docs {
		raw, err := json.Marshal(d)
		if err != nil {
			panic(err) // maps of strings, numbers and slices always marshal
		}
		s.Policies = append(s.Policies, raw)
	}
	return s
}

func seedsToRun(t *testing.T) []uint64 {
	if *diffSeed != 0 {
		return []uint64{*diffSeed}
	}
	if v := os.Getenv("BRINDLE_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("BRINDLE_DIFF_SEED=%q is not a number", v)
		}
		return []uint64{n}
	}
	return diffSeeds
}

// TestPrivilegedDifferential programs generated scenarios through the
// whole agent (etcd → calc → nftables and routes in a host namespace) and
// checks every probe's real verdict against the reference evaluator.
//
// It runs three times, in parallel: with every class in a chain of its
// own and every tier walked linearly, the same with every tier reached
// through a tier index (dataplane/nft index.go), and with every class
// run through the generic chains (dataplane/nft generic.go) from the
// start and settling put off, so the probes go through them.
func TestPrivilegedDifferential(t *testing.T) {
	for _, mode := range []struct {
		name     string
		minIndex int
		classes  nft.ClassMode
	}{{"linear", -1, nft.ClassDirect}, {"indexed", 1, nft.ClassDirect}, {"generic", -1, nft.ClassAuto}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			l.nft.IndexMinPolicies = mode.minIndex
			l.nft.ClassMode = mode.classes
			l.nft.GenericFromStart = mode.classes == nft.ClassAuto
			l.settle = time.Hour
			indexed, generic := differential(t, l)
			if mode.minIndex > 0 && indexed == 0 {
				t.Error("no seed's ruleset held a tier index")
			}
			if mode.classes == nft.ClassAuto && generic == 0 {
				t.Error("no seed's probes ran through a generic class")
			}
		})
	}
}

// differential runs the seeds in one lab and returns how many of them
// were programmed with at least one tier index, and with at least one
// generic class.
func differential(t *testing.T, l *lab) (indexed, generic int) {
	var prev world
	started := false
	for _, seed := range seedsToRun(t) {
		s := genScenario(seed)
		b, err := s.Build()
		if err != nil {
			t.Fatalf("seed %d: generated scenario does not build: %v", seed, err)
		}
		w := worldOf(t, b)
		if !started {
			l.load(w, diffPorts)
			l.start()
			started = true
		} else {
			l.load(world{built: b}, diffPorts) // pods exist; servers too
			l.setWorld(prev, w)
		}
		prev = w
		l.sync()
		cases := allPairs(t, b, diffPorts)
		allowed := 0
		for _, c := range cases {
			if c.want {
				allowed++
			}
		}
		if wrong := l.check(cases); len(wrong) > 0 {
			text, _ := yaml.Marshal(s)
			t.Errorf("seed %d (rerun: go test ./agent -run TestPrivilegedDifferential -seed %d): %d of %d probes disagree:\n  %s\nscenario:\n%s",
				seed, seed, len(wrong), len(cases), strings.Join(wrong, "\n  "), text)
			continue
		}
		t.Logf("seed %d: %d probes agree (%d allowed)", seed, len(cases), allowed)
		out, err := exec.Command("nsenter", "--net="+l.host.Path(), "nft", "list", "table", "inet", "brindle").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "meta l4proto vmap @xp-") {
			indexed++
		}
		if testutil.ToFloat64(l.agent.a.m.genericClasses) > 0 {
			generic++
		}
	}
	return indexed, generic
}
