package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNodeStaysLean keeps Kubernetes' typed clientset, informers, listers
// and leader election (and the controller built on them) out of the
// brindle binary. Their package initialisers register every API group at
// start-up: linked in, they added ~30 MB to the idle RSS of `brindle node`
// (docs/benchmarks-agent.md, "Idle RSS"). The node reads pods through
// integrations/kubernetes/kubepod; the controller is
// cmd/brindle-kube-controllers.
func TestNodeStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/brindle-net/brindle/cmd/brindle").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	const mod = "github.com/brindle-net/brindle/"
	if !slices.Contains(deps, mod+"integrations/kubernetes/kubepod") {
		t.Fatalf("go list -deps does not list kubepod; is the test looking at the right package?\n%s", out)
	}
	forbiddenTrees := []string{
		"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/listers",
		"k8s.io/client-go/tools/leaderelection", "k8s.io/client-go/applyconfigurations",
	}
	for _, dep := range deps {
		for _, f := range forbiddenTrees {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("cmd/brindle depends on %s (nothing under %s is allowed)", dep, f)
			}
		}
		if dep == mod+"integrations/kubernetes" {
			t.Errorf("cmd/brindle depends on %s, the controller", dep)
		}
	}
}
