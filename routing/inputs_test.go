package routing

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func set(key, value string) datastore.Update {
	return datastore.Update{Type: datastore.UpdateSet, Key: key, Value: []byte(value)}
}

func del(key string) datastore.Update {
	return datastore.Update{Type: datastore.UpdateDelete, Key: key}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// block renders a /30 block's JSON with ordinal o allocated to nodes[o]
// ("" = free, a "~" prefix = released and cooling down).
func block(cidr string, nodes ...string) string {
	var allocs, attrs []string
	for _, n := range nodes {
		if n == "" {
			allocs = append(allocs, "null")
			continue
		}
		released := ""
		if r, ok := strings.CutPrefix(n, "~"); ok {
			n, released = r, `,"releasedAt":"2026-01-01T00:00:00Z"`
		}
		allocs = append(allocs, strconv.Itoa(len(attrs)))
		attrs = append(attrs, `{"handle_id":"h","secondary":{"node":"`+n+`"}`+released+`}`)
	}
	for len(allocs) < 4 {
		allocs = append(allocs, "null")
	}
	return `{"cidr":"` + cidr + `","affinity":"host:x","allocations":[` + strings.Join(allocs, ",") +
		`],"unallocated":[],"attributes":[` + strings.Join(attrs, ",") + `],"sequenceNumber":1,"sequenceNumberForAllocation":{},"deleted":false}`
}

const (
	aff  = "/calico/ipam/v2/host/a/ipv4/block/"
	blk  = "/calico/ipam/v2/assignment/ipv4/block/"
	conf = `{"state":"confirmed","deleted":false}`
)

// TestInputsFromUpdates: affinities and blocks as watch updates → Blocks
// and Borrowed for node "a".
func TestInputsFromUpdates(t *testing.T) {
	tests := []struct {
		name         string
		updates      []datastore.Update
		wantBlocks   []netip.Prefix
		wantBorrowed []netip.Addr
		wantProblems []string
	}{
		{
			name:       "confirmed affinity is a block",
			updates:    []datastore.Update{set(aff+"10.244.1.0-26", conf)},
			wantBlocks: pfxs("10.244.1.0/26"),
		},
		{
			name:       "affinity without state counts (compat §7.3)",
			updates:    []datastore.Update{set(aff+"10.244.1.0-26", `{}`)},
			wantBlocks: pfxs("10.244.1.0/26"),
		},
		{
			name: "pending, pendingDeletion and deleted affinities count as absent",
			updates: []datastore.Update{
				set(aff+"10.244.1.0-26", `{"state":"pending"}`),
				set(aff+"10.244.2.0-26", `{"state":"pendingDeletion"}`),
				set(aff+"10.244.3.0-26", `{"state":"confirmed","deleted":true}`),
			},
		},
		{
			name:    "a confirmed affinity going back to pending is withdrawn",
			updates: []datastore.Update{set(aff+"10.244.1.0-26", conf), set(aff+"10.244.1.0-26", `{"state":"pendingDeletion"}`)},
		},
		{
			name:       "deleted affinity key",
			updates:    []datastore.Update{set(aff+"10.244.1.0-26", conf), set(aff+"10.244.2.0-26", conf), del(aff + "10.244.1.0-26")},
			wantBlocks: pfxs("10.244.2.0/26"),
		},
		{
			name:    "IPv6 affinities and blocks are ignored",
			updates: []datastore.Update{set("/calico/ipam/v2/host/a/ipv6/block/fd00::-122", conf), set("/calico/ipam/v2/assignment/ipv6/block/fd00::-122", `{}`)},
		},
		{
			name: "addresses of a in others' blocks are borrowed; released ones and b's are not",
			updates: []datastore.Update{
				set(blk+"10.244.9.0-30", block("10.244.9.0/30", "b", "a", "~a", "a")),
				set(blk+"10.244.9.4-30", block("10.244.9.4/30", "", "b")),
			},
			wantBorrowed: addrs("10.244.9.1", "10.244.9.3"),
		},
		{
			name: "addresses in a's own blocks are not borrowed",
			updates: []datastore.Update{
				set(aff+"10.244.9.0-30", conf),
				set(blk+"10.244.9.0-30", block("10.244.9.0/30", "a", "a")),
			},
			wantBlocks: pfxs("10.244.9.0/30"),
		},
		{
			name: "a block whose affinity is still pending: its addresses are advertised one by one",
			updates: []datastore.Update{
				set(aff+"10.244.9.0-30", `{"state":"pending"}`),
				set(blk+"10.244.9.0-30", block("10.244.9.0/30", "a")),
			},
			wantBorrowed: addrs("10.244.9.0"),
		},
		{
			name: "a block update that frees the address, then a deleted block",
			updates: []datastore.Update{
				set(blk+"10.244.9.0-30", block("10.244.9.0/30", "b", "a")),
				set(blk+"10.244.9.4-30", block("10.244.9.4/30", "a")),
				set(blk+"10.244.9.0-30", block("10.244.9.0/30", "b")),
				del(blk + "10.244.9.4-30"),
			},
		},
		{
			name: "bad values are reported and skipped; the rest is used",
			updates: []datastore.Update{
				set(aff+"10.244.1.0-26", `{"state":`),
				set(aff+"10.244.2.0-99", conf),
				set(aff+"10.244.2.1-26", conf),
				set("/calico/ipam/v2/host/a/nonsense", conf),
				set(blk+"10.244.9.0-30", `[]`),
				set(blk+"10.244.9.4-30", `{"cidr":"10.244.9.4/30","allocations":[5],"attributes":[]}`),
				set(aff+"10.244.3.0-26", conf),
			},
			wantBlocks: pfxs("10.244.3.0/26"),
			wantProblems: []string{
				blk + "10.244.9.0-30: block: json: cannot unmarshal array into Go value of type ipam.Block",
				blk + "10.244.9.4-30: block: allocations[0] refers to attribute 5 of 0",
				aff + "10.244.1.0-26: affinity: unexpected end of JSON input",
				aff + `10.244.2.0-99: block name "10.244.2.0-99": netip.ParsePrefix("10.244.2.0/99"): prefix length out of range`,
				aff + `10.244.2.1-26: block name "10.244.2.1-26": want a masked IPv4 block of /20 to /32`,
				"/calico/ipam/v2/host/a/nonsense: not an affinity key (want <node>/ipv4/block/<cidr>)",
			},
		},
		{
			name:    "a problem clears when the key is fixed",
			updates: []datastore.Update{set(aff+"10.244.1.0-26", `{`), set(aff+"10.244.1.0-26", conf)}, wantBlocks: pfxs("10.244.1.0/26"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newInputState("a")
			for _, u := range tc.updates {
				s.feed(u)
			}
			in := s.inputs()
			if d := cmp.Diff(tc.wantBlocks, in.Blocks, cmpopts.EquateEmpty(), cmpNetip); d != "" {
				t.Errorf("Blocks (-want +got)\n%s", d)
			}
			if d := cmp.Diff(tc.wantBorrowed, in.Borrowed, cmpopts.EquateEmpty(), cmpNetip); d != "" {
				t.Errorf("Borrowed (-want +got)\n%s", d)
			}
			if d := cmp.Diff(tc.wantProblems, s.problemList(), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("problems (-want +got)\n%s", d)
			}
		})
	}
}

// TestInputsResources: Nodes, BGPPeers and BGPConfigurations are kept by
// name, deleted on delete, sorted in Inputs; feed says whether an update
// can change the plan.
func TestInputsResources(t *testing.T) {
	s := newInputState("a")
	obj := func(kind, name string) datastore.Update {
		u := datastore.Update{Type: datastore.UpdateSet, Kind: kind, Name: name}
		meta := metav1.ObjectMeta{Name: name}
		switch kind {
		case "Node":
			u.Object = &api.Node{ObjectMeta: meta}
		case "BGPPeer":
			u.Object = &api.BGPPeer{ObjectMeta: meta}
		case "BGPConfiguration":
			u.Object = &api.BGPConfiguration{ObjectMeta: meta}
		}
		return u
	}
	for _, u := range []datastore.Update{obj("Node", "c"), obj("Node", "a"), obj("Node", "b"), obj("BGPPeer", "tor"), obj("BGPConfiguration", "default")} {
		if !s.feed(u) {
			t.Errorf("feed %s %s: reported no change", u.Kind, u.Name)
		}
	}
	if !s.feed(datastore.Update{Type: datastore.UpdateDelete, Kind: "Node", Name: "b"}) {
		t.Errorf("delete Node b: reported no change")
	}
	for _, u := range []datastore.Update{
		{Type: datastore.UpdateInSync},
		set("/calico/ipam/v2/host/ab/ipv4/block/10.0.0.0-26", conf), // another node's affinity
		set(blk+"10.244.9.0-30", block("10.244.9.0/30", "b")),       // nothing of a's
		del(aff + "10.244.1.0-26"),                                  // never seen
	} {
		if s.feed(u) {
			t.Errorf("feed %v %s: reported a change", u.Type, u.Key)
		}
	}
	in := s.inputs()
	var names []string
	for _, n := range in.Nodes {
		names = append(names, n.Name)
	}
	if d := cmp.Diff([]string{"a", "c"}, names); d != "" {
		t.Errorf("nodes (-want +got)\n%s", d)
	}
	if len(in.Peers) != 1 || len(in.Configs) != 1 || in.NodeName != "a" {
		t.Errorf("inputs: %+v", in)
	}
}

// TestInputsFromIPAM: what package ipam writes (claims, a borrowed named
// address, a release) reads back as the blocks and borrowed addresses
// ipam.BlocksForHost and ipam.BorrowedIPs report.
func TestInputsFromIPAM(t *testing.T) {
	ctx := context.Background()
	store := ipam.NewMemStore()
	src := &ipam.StaticSource{Pools: []*api.IPPool{{
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec:       api.IPPoolSpec{CIDR: "10.244.0.0/16", BlockSize: 26},
	}}}
	m, err := ipam.New(store, ipam.Config{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "a"} {
		if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Num4: 1, HandleID: "h-" + n, Node: n}); err != nil {
			t.Fatalf("assign for %s: %v", n, err)
		}
	}
	bBlocks, err := m.BlocksForHost(ctx, "b")
	if err != nil || len(bBlocks) != 1 {
		t.Fatalf("b's blocks: %v %v", bBlocks, err)
	}
	borrowed := bBlocks[0].Addr().Next().Next().Next()
	if err := m.AssignIP(ctx, ipam.AssignIPArgs{IP: borrowed, HandleID: "h-borrow", Node: "a"}); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		for _, node := range []string{"a", "b"} {
			s := newInputState(node)
			kvs, err := store.List(ctx, "/calico/ipam/v2/")
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range kvs {
				if strings.HasPrefix(kv.Key, ipamBlockPrefix) || strings.HasPrefix(kv.Key, ipamHostPrefix+node+"/") {
					s.feed(set(kv.Key, string(kv.Value)))
				}
			}
			wantBlocks, err := m.BlocksForHost(ctx, node)
			if err != nil {
				t.Fatal(err)
			}
			wantBorrowed, err := m.BorrowedIPs(ctx, node)
			if err != nil {
				t.Fatal(err)
			}
			in := s.inputs()
			if d := cmp.Diff(wantBlocks, in.Blocks, cmpopts.EquateEmpty(), cmpNetip); d != "" {
				t.Errorf("%s: %s blocks (-ipam +daemon)\n%s", what, node, d)
			}
			if d := cmp.Diff(wantBorrowed, in.Borrowed, cmpopts.EquateEmpty(), cmpNetip); d != "" {
				t.Errorf("%s: %s borrowed (-ipam +daemon)\n%s", what, node, d)
			}
			if len(wantBlocks) == 0 {
				t.Errorf("%s: %s has no blocks; the test proves nothing", what, node)
			}
		}
	}
	check("after assignment")
	if got, _ := m.BorrowedIPs(ctx, "a"); len(got) != 1 || got[0] != borrowed {
		t.Fatalf("ipam: a borrowed %v, want %s", got, borrowed)
	}
	if _, err := m.ReleaseIPs(ctx, ipam.ReleaseOptions{Address: borrowed}); err != nil {
		t.Fatal(err)
	}
	check("after release")
}
