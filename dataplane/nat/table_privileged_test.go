package nat

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/internal/netnstest"
)

func nftList(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestPrivilegedTableDeclarative: create, repeat (no write), change sets
// (one set transaction), repair a damaged table, delete; another table in
// the namespace is never touched.
func TestPrivilegedTableDeclarative(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	ns := netnstest.NewNS(t, "nat")
	// Someone else's table, which must survive everything.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "add table inet brindle; add chain inet brindle keep").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	tb, err := New(Config{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()

	d1 := Desired{Masquerade: prefixes("10.65.0.0/16"), Pools: prefixes("10.65.0.0/16", "10.70.0.0/16")}
	if err := tb.Apply(d1); err != nil {
		t.Fatalf("apply: %v", err)
	}
	rs := nftList(t, ns)
	for _, want := range []string{"table ip brindle-nat", "10.65.0.0/16", "10.70.0.0/16",
		"type nat hook postrouting priority srcnat", "ip saddr @masq-pools ip daddr != @all-pools", "masquerade", "table inet brindle"} {
		if !strings.Contains(rs, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rs)
		}
	}
	if s := tb.Stats(); s.Rebuilds != 1 || s.Writes() != 1 {
		t.Errorf("after first apply: stats %+v, want one rebuild", s)
	}

	// Idempotent.
	if err := tb.Apply(d1); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if err := tb.Resync(); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if s := tb.Stats(); s.Writes() != 1 {
		t.Errorf("repeat apply and resync wrote: %+v", s)
	}

	// A pool added: only a set update.
	d2 := Desired{Masquerade: prefixes("10.65.0.0/16", "10.67.0.0/16"), Pools: prefixes("10.65.0.0/16", "10.70.0.0/16", "10.67.0.0/16")}
	if err := tb.Apply(d2); err != nil {
		t.Fatalf("apply d2: %v", err)
	}
	if s := tb.Stats(); s.SetUpdates != 1 || s.Rebuilds != 1 {
		t.Errorf("after d2: stats %+v, want one set update and no new rebuild", s)
	}
	if rs := nftList(t, ns); !strings.Contains(rs, "10.67.0.0/16") {
		t.Errorf("ruleset lacks the new pool:\n%s", rs)
	}
	if err := tb.Apply(d2); err != nil {
		t.Fatal(err)
	}
	if s := tb.Stats(); s.Writes() != 2 {
		t.Errorf("repeat of d2 wrote: %+v", s)
	}

	// Damage: someone adds a rule to our chain; resync rebuilds.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "add rule ip brindle-nat postrouting accept").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	if err := tb.Resync(); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if s := tb.Stats(); s.Rebuilds != 2 {
		t.Errorf("damaged table not rebuilt: %+v", s)
	}
	if rs := nftList(t, ns); strings.Contains(rs, "accept") && strings.Count(rs, "masquerade") != 1 {
		t.Errorf("stray rule survived:\n%s", rs)
	}

	// No natOutgoing pool: the table goes, the other table stays.
	if err := tb.Apply(Desired{Pools: prefixes("10.65.0.0/16")}); err != nil {
		t.Fatalf("apply empty: %v", err)
	}
	rs = nftList(t, ns)
	if strings.Contains(rs, "brindle-nat") || !strings.Contains(rs, "table inet brindle") {
		t.Errorf("after removal:\n%s", rs)
	}
	if err := tb.Apply(Desired{}); err != nil {
		t.Fatal(err)
	}
	if s := tb.Stats(); s.Deletes != 1 {
		t.Errorf("deletes %d, want 1 (deleting what is gone is a no-op)", s.Deletes)
	}
}
