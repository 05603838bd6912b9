package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden are import path prefixes that only the I/O layers may use.
var forbidden = []string{
	"go.etcd.io/etcd",
	"github.com/vishvananda/netlink",
	"github.com/vishvananda/netns",
	"github.com/google/nftables",
	"github.com/mdlayher/netlink",
	"github.com/osrg/gobgp",
	"k8s.io/client-go",
	"github.com/containernetworking",
}

// pure are the packages that must stay free of them. A package listed here
// that does not exist yet is skipped, so the test can name packages before
// they land.
var pure = []string{
	"selector",
	"api",
	"policy",
	"desired",
	"calc",
}

func TestPurePackagesDoNotReachIO(t *testing.T) {
	for _, p := range pure {
		t.Run(p, func(t *testing.T) {
			pkg := "github.com/brindle-net/brindle/" + p
			out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "cannot find package") ||
					strings.Contains(string(out), "no required module provides") ||
					strings.Contains(string(out), "matched no packages") ||
					strings.Contains(string(out), "is not in std") ||
					strings.Contains(string(out), "directory not found") {
					t.Skipf("%s does not exist yet", pkg)
				}
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range forbidden {
					if strings.HasPrefix(dep, f) {
						t.Errorf("%s imports %s (directly or not); pure packages must not reach %s", pkg, dep, f)
					}
				}
			}
		})
	}
}

// binaries are the commands we ship.
var binaries = []string{"cmd/brindle", "cmd/brindlectl", "cmd/brindle-cni"}

// TestBinariesCarryNoTestHelpers: the shipped commands must not link the
// testing package or our own test helpers (internal/netnstest, the
// datastoretest embedded-etcd harness, cni/cnitest).
func TestBinariesCarryNoTestHelpers(t *testing.T) {
	helpers := []string{
		"testing",
		"github.com/brindle-net/brindle/internal/netnstest",
		"github.com/brindle-net/brindle/datastore/datastoretest",
		"github.com/brindle-net/brindle/cni/cnitest",
	}
	for _, b := range binaries {
		t.Run(b, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "github.com/brindle-net/brindle/"+b).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", b, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, h := range helpers {
					if dep == h {
						t.Errorf("%s links %s", b, dep)
					}
				}
			}
		})
	}
}
