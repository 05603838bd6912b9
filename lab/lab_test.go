package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/policy/scenario"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"lab", true}, {"a", true}, {"demo-2", true}, {"abcdefghijkl", true},
		{"", false}, {"abcdefghijklm", false}, {"2lab", false}, {"Lab", false},
		{"a_b", false}, {"a.b", false}, {"a/b", false},
	} {
		if err := ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestCovered(t *testing.T) {
	rs := []route{
		{Dst: "default", Gateway: "172.30.1.1"},
		{Dst: "10.244.1.0/26", Gateway: "172.30.1.13", Protocol: "99"},
		{Type: "blackhole", Dst: "10.244.2.0/26"},
		{Dst: "10.244.2.5", Dev: "cali1"},
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.244.1.7", true},   // remote block
		{"10.244.2.5", true},   // local /32
		{"10.244.2.6", false},  // only the blackhole
		{"192.0.2.1", false},   // only the default route
		{"10.244.1.64", false}, // outside every block
	} {
		if got := covered(rs, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("covered(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestBirdConfig(t *testing.T) {
	st := &State{Name: "x", TOR: true, Router: Host{Addr: netip.MustParsePrefix("172.30.1.1/24")}, Hosts: []Host{
		{Name: "host1", Addr: netip.MustParsePrefix("172.30.1.11/24")},
		{Name: "host2", Addr: netip.MustParsePrefix("172.30.2.12/24")},
	}}
	conf := birdConfig(st)
	for _, want := range []string{
		"router id 172.30.1.1;",
		"local as 64513;",
		"protocol bgp host1 from hosts { neighbor 172.30.1.11 as 65001; }",
		"protocol bgp host2 from hosts { neighbor 172.30.2.12 as 65002; }",
		"export all",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("BIRD config lacks %q:\n%s", want, conf)
		}
	}
}

func TestExtraPools(t *testing.T) {
	pods := []scenario.Pod{
		{Name: "a", IP: "10.244.3.4"}, // in the lab's pool
		{Name: "b", IP: "10.10.1.5"},
		{Name: "c", IP: "10.10.1.9"}, // same /24 as b
		{Name: "d", IP: "10.99.0.5"},
		{Name: "e"}, // from IPAM
	}
	var got []string
	for _, o := range extraPools(pods) {
		p := o.(*api.IPPool)
		got = append(got, p.Name+" "+p.Spec.CIDR)
	}
	want := []string{"lab-run-10-10-1-0-24 10.10.1.0/24", "lab-run-10-99-0-0-24 10.99.0.0/24"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extraPools (-want +got):\n%s", diff)
	}
}

// TestWriteText renders a run like policy check, with the lab's marks.
func TestWriteText(t *testing.T) {
	yes, no := true, false
	sc := &scenario.Scenario{
		Name: "marks",
		Pods: []scenario.Pod{{Namespace: "x", Name: "a"}, {Namespace: "x", Name: "b"}},
		Probes: []scenario.Probe{
			{From: "x/a", To: "x/b", Port: 80, Allowed: &yes},
			{From: "x/b", To: "x/a", Port: 80, Allowed: &no},
			{From: "x/a", To: "x/a", Port: 80, Allowed: &yes},
			{From: "x/a", To: "x/b", Port: 9, Protocol: "SCTP", Allowed: &yes},
		},
	}
	b, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	pr := func(i int, allowed, eval bool) ProbeResult {
		r := ProbeResult{ProbeResult: scenario.ProbeResult{Probe: sc.Probes[i]}, Evaluator: eval}
		r.Result.Allowed = allowed
		r.Wrong = *sc.Probes[i].Allowed != allowed
		return r
	}
	res := &RunResult{Lab: "t", Built: b, Probes: []ProbeResult{
		pr(0, true, true),
		pr(1, true, false), // wrong, and the evaluator disagrees
		{ProbeResult: scenario.ProbeResult{Probe: sc.Probes[2]}, NotPoliced: true},
		{ProbeResult: scenario.ProbeResult{Probe: sc.Probes[3]}, Skipped: "kernel has no SCTP"},
	}, Wrong: 1, NotPol: 1, Skipped: 1, Disagree: 1}
	var out bytes.Buffer
	if err := res.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	want := `scenario marks: 2 probes, 1 wrong (real packets on lab t)

80/TCP
from \ to  x/a  x/b
x/a        -    A  
x/b        A!*  .  

9/SCTP
from \ to  x/b
x/a        S  

A allowed, D denied, ! expectation wrong, ? no expectation, . not probed, - not policed, S skipped, * evaluator disagrees

1 pod-to-itself probes are not policed: the packet never leaves the pod, so no host
policy sees it (policy check evaluates them; the lab does not count them).

skipped:
  1 probes: kernel has no SCTP

wrong expectations:
  x/b -> x/a 80/TCP: expected denied, got allowed
`
	got := out.String()
	if i := strings.Index(got, "\n    "); i >= 0 {
		// The evaluator's explanation lines follow; their wording is
		// package policy's.
		got = got[:i+1]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WriteText (-want +got):\n%s\nfull output:\n%s", diff, out.String())
	}
	if !strings.Contains(out.String(), "the reference evaluator disagrees with the packets on 1 probes:\n  x/b -> x/a 80/TCP: packets allowed, evaluator denied") {
		t.Errorf("disagreement not listed:\n%s", out.String())
	}

	out.Reset()
	if err := res.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Total, Wrong, NotPoliced, Skipped int
		Disagree                          int `json:"evaluatorDisagrees"`
		Probes                            []struct {
			From, To   string
			Allowed    bool
			Evaluator  bool
			Wrong      bool
			NotPoliced bool
			Skipped    string
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Total != 2 || doc.Wrong != 1 || doc.NotPoliced != 1 || doc.Skipped != 1 || doc.Disagree != 1 || len(doc.Probes) != 4 {
		t.Errorf("JSON counts = %+v", doc)
	}
	if p := doc.Probes[1]; !p.Allowed || p.Evaluator || !p.Wrong {
		t.Errorf("JSON probe 1 = %+v, want allowed, evaluator denied, wrong", p)
	}
	if !doc.Probes[2].NotPoliced || doc.Probes[3].Skipped != "kernel has no SCTP" {
		t.Errorf("JSON probes 2, 3 = %+v, %+v", doc.Probes[2], doc.Probes[3])
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		ok         bool
	}{
		{"good", "name: x\npods: [{namespace: x, name: a}]\n", true},
		{"unknown field", "name: x\npods: [{namespace: x, name: a, bogus: 1}]\n", false},
		{"unknown pod", "name: x\npods: [{namespace: x, name: a}]\nprobes: [{from: x/a, to: x/b, port: 80}]\n", false},
		{"bad policy", "name: x\npolicies: [{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: p}, spec: {selector: \"a ==\"}}]\n", false},
	} {
		err := Check([]byte(tc.yaml))
		var bad *BadInputError
		if tc.ok && err != nil || !tc.ok && !errors.As(err, &bad) {
			t.Errorf("%s: Check = %v, want ok %v (or a BadInputError)", tc.name, err, tc.ok)
		}
	}
}
