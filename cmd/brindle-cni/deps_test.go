package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPluginStaysThin keeps the plugin binary free of etcd, the datastore,
// the IPAM and the agent: it only talks to the agent over its socket. It
// also keeps out net/http and crypto/tls: the runtime starts the plugin
// for every ADD, and their start-up cost counts on every pod.
func TestPluginStaysThin(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/brindle-net/brindle/cmd/brindle-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/brindle-net/brindle/cni/plugin") {
		t.Fatalf("go list -deps does not list cni/plugin; is the test looking at the right package?\n%s", out)
	}
	const mod = "github.com/brindle-net/brindle/"
	forbiddenTrees := []string{"go.etcd.io", mod + "datastore", mod + "ipam", mod + "agent", mod + "calc", mod + "dataplane", "net/http", "crypto/tls"}
	for _, dep := range deps {
		for _, f := range forbiddenTrees {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("cmd/brindle-cni depends on %s (nothing under %s is allowed)", dep, f)
			}
		}
		if dep == mod+"cni" { // the agent-side service
			t.Errorf("cmd/brindle-cni depends on %s, the agent-side service", dep)
		}
	}
}
