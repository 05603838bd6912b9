package scenario

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const textScenario = `
name: text
description: |
  b takes no ingress.
pods:
- {namespace: x, name: a}
- {namespace: x, name: b}
- {namespace: x, name: long-name}
policies:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny-b, namespace: x}
  spec:
    podSelector: {matchLabels: {}}
    policyTypes: [Ingress]
probes:
- {from: x/a, to: x/b, port: 80, allowed: false}
- {from: x/long-name, to: x/a, port: 80, allowed: true}
- {from: x/a, to: x/b, port: 53, protocol: UDP}
externalProbes:
- {from: 192.0.2.1, to: x/a, port: 80, allowed: false}
`

func buildText(t *testing.T) (*Built, []ProbeResult) {
	t.Helper()
	sc, err := Parse([]byte(textScenario))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sc.Build()
	if err != nil {
		t.Fatal(err)
	}
	return b, b.Run(true)
}

func TestCell(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		allowed, wrong bool
		expect         *bool
		want           string
	}{
		{true, false, &yes, "A"},
		{false, false, &no, "D"},
		{true, true, &no, "A!"},
		{false, true, &yes, "D!"},
		{true, false, nil, "A?"},
		{false, false, nil, "D?"},
	} {
		r := ProbeResult{Probe: Probe{Allowed: tc.expect}, Wrong: tc.wrong}
		r.Result.Allowed = tc.allowed
		if got := r.Cell(); got != tc.want {
			t.Errorf("Cell(allowed %v, wrong %v, expectation %v) = %q, want %q", tc.allowed, tc.wrong, tc.expect != nil, got, tc.want)
		}
	}
}

func TestLegend(t *testing.T) {
	for _, tc := range []struct {
		expectations bool
		extra        []string
		want         string
	}{
		{true, nil, "A allowed, D denied, ! expectation wrong, ? no expectation, . not probed"},
		{false, nil, "A allowed, D denied, . not probed"},
		{false, []string{"S skipped", "* odd"}, "A allowed, D denied, . not probed, S skipped, * odd"},
	} {
		if got := Legend(tc.expectations, tc.extra...); got != tc.want {
			t.Errorf("Legend(%v, %q) = %q, want %q", tc.expectations, tc.extra, got, tc.want)
		}
	}
}

// TestWriteText is the whole of `policy check`'s text output.
func TestWriteText(t *testing.T) {
	b, results := buildText(t)
	var out bytes.Buffer
	if err := WriteText(&out, b, results); err != nil {
		t.Fatal(err)
	}
	// The wrong probes' verdict lines are package policy's wording.
	ext := results[3].Result
	want := `scenario text: 4 probes, 1 wrong
  b takes no ingress.

80/TCP
from \ to    x/a  x/b
x/a          .    D  
x/long-name  D!   .  

53/UDP
from \ to  x/b
x/a        D? 

external
  192.0.2.1          -> x/a                  80/TCP     D

A allowed, D denied, ! expectation wrong, ? no expectation, . not probed

wrong expectations:
  x/long-name -> x/a 80/TCP: expected allowed, got denied
    ` + results[1].Result.Egress.String() + `
    ` + results[1].Result.Ingress.String() + `
`
	if ext.Allowed {
		t.Fatalf("external probe allowed; the scenario should deny it")
	}
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("WriteText (-want +got):\n%s", diff)
	}
}

// TestWriteMatricesOptions replaces the cells and the external title, as
// the lab does.
func TestWriteMatricesOptions(t *testing.T) {
	b, results := buildText(t)
	var w strings.Builder
	WriteMatrices(&w, b.PodOrder, results, MatrixOptions{
		Cell:          func(i int) string { return strings.Repeat("c", i+1) },
		ExternalTitle: "outside",
	})
	want := `
80/TCP
from \ to    x/a  x/b
x/a          .    c  
x/long-name  cc   .  

53/UDP
from \ to  x/b
x/a        ccc

outside
  192.0.2.1          -> x/a                  80/TCP     cccc
`
	if diff := cmp.Diff(want, w.String()); diff != "" {
		t.Errorf("WriteMatrices (-want +got):\n%s", diff)
	}
}

func TestWriteWrongNone(t *testing.T) {
	_, results := buildText(t)
	results[1].Wrong = false
	var w strings.Builder
	WriteWrong(&w, results)
	if w.Len() != 0 {
		t.Errorf("WriteWrong with no wrong result wrote %q", w.String())
	}
	WriteWrong(&w, nil)
	if w.Len() != 0 {
		t.Errorf("WriteWrong(nil) wrote %q", w.String())
	}
}

// TestJSONProbeEmbedded: the shared fields come first, in order, and a
// command's own fields follow.
func TestJSONProbeEmbedded(t *testing.T) {
	_, results := buildText(t)
	doc := struct {
		JSONProbe
		Reason string `json:"reason"`
	}{NewJSONProbe(&results[1], "TCP"), "why"}
	got, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"from":"x/long-name","to":"x/a","port":80,"protocol":"TCP","expected":true,"allowed":false,"wrong":true,"reason":"why"}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
}
