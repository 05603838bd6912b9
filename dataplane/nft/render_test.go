package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestRenderGolden(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.65.0.1"), netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("10.65.0.3")
	tests := []struct {
		name  string
		cfg   Config
		state *desired.State
	}{
		{"empty", Config{}, &desired.State{}},
		{"pci", Config{}, pciState(a, b, c, "calif", "calio", "calid")},
		{"kitchen-sink", Config{}, kitchenSink()},
		// Every tier through a tier index (index.go).
		{"kitchen-sink-indexed", Config{IndexMinPolicies: 1}, kitchenSink()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.cfg, tt.state)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Render mismatch (-want +got; -update rewrites):\n%s", diff)
			}
		})
	}
}

func TestRenderRejectsInvalidState(t *testing.T) {
	s := &desired.State{Policies: desired.MapOf(map[desired.PolicyID]desired.Policy{{Name: "p"}: {Inbound: []desired.Rule{{
		Action: desired.Allow, Src: desired.Match{IPSetIDs: []string{"s:nope"}},
	}}}})}
	if _, err := Render(Config{}, s); err == nil {
		t.Fatal("Render accepted a rule naming a missing IP set")
	}
	if _, err := Render(Config{PassMark: 3}, &desired.State{}); err == nil {
		t.Fatal("Render accepted a two-bit pass mark")
	}
}
