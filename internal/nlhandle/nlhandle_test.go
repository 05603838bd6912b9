package nlhandle_test

import (
	"strings"
	"testing"

	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/internal/nlhandle"
)

func TestOpenCurrent(t *testing.T) {
	nl, ns, err := nlhandle.Open("")
	if err != nil {
		t.Fatal(err)
	}
	if nl == nil || ns != -1 {
		t.Errorf("Open(\"\") = %v, %d; want a handle and -1", nl, ns)
	}
	if err := nlhandle.Close(nl, ns); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	nl, ns, err := nlhandle.Open("/nonexistent/netns")
	if err == nil || !strings.HasPrefix(err.Error(), "open netns /nonexistent/netns: ") {
		t.Fatalf("Open of a missing path: error %v, want one starting \"open netns /nonexistent/netns: \"", err)
	}
	if nl != nil || ns != -1 {
		t.Errorf("Open of a missing path = %v, %d; want nil, -1", nl, ns)
	}
	if err := nlhandle.Close(nil, -1); err != nil {
		t.Errorf("Close(nil, -1) = %v", err)
	}
}

// TestPrivilegedOpenNamespace opens a fresh namespace and sees only its lo.
func TestPrivilegedOpenNamespace(t *testing.T) {
	t.Parallel()
	n := netnstest.NewNS(t, "nlh")
	nl, ns, err := nlhandle.Open(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	if ns < 0 {
		t.Errorf("Open(%s): namespace handle %d, want an open one", n.Path(), ns)
	}
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Errorf("links in a new namespace = %v, want [lo]", names)
	}
	if err := nlhandle.Close(nl, ns); err != nil {
		t.Errorf("Close: %v", err)
	}
}
