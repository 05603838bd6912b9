package ipam

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

func TestKeys(t *testing.T) {
	tests := []struct {
		cidr          string
		block, affine string
	}{
		{"10.0.0.0/26", "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26",
			"/calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26"},
		{"fd00:1::40/122", "/calico/ipam/v2/assignment/ipv6/block/fd00:1::40-122",
			"/calico/ipam/v2/host/node1/ipv6/block/fd00:1::40-122"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.cidr)
		if got := BlockKey(p); got != tt.block {
			t.Errorf("BlockKey(%s) = %s, want %s", p, got, tt.block)
		}
		if got := AffinityKey("node1", p); got != tt.affine {
			t.Errorf("AffinityKey(%s) = %s, want %s", p, got, tt.affine)
		}
		if got, err := parseBlockKey(tt.block); err != nil || got != p {
			t.Errorf("parseBlockKey(%s) = %s, %v", tt.block, got, err)
		}
		if n, got, err := parseAffinityKey(tt.affine); err != nil || got != p || n != "node1" {
			t.Errorf("parseAffinityKey(%s) = %s %s, %v", tt.affine, n, got, err)
		}
	}
	if HandleKey("k8s-pod-network.abc") != "/calico/ipam/v2/handle/k8s-pod-network.abc" {
		t.Error("HandleKey")
	}
	for _, bad := range []string{"/calico/ipam/v2/assignment/ipv4/block/10.0.0.0", "/calico/ipam/v2/assignment/ipv4/x/10.0.0.0-26", "/other"} {
		if _, err := parseBlockKey(bad); err == nil {
			t.Errorf("parseBlockKey(%q) accepted", bad)
		}
	}
}

func TestOrdinals(t *testing.T) {
	tests := []struct {
		cidr string
		ord  int
		addr string
	}{
		{"10.0.0.64/26", 0, "10.0.0.64"},
		{"10.0.0.64/26", 63, "10.0.0.127"},
		{"10.0.16.0/20", 4095, "10.0.31.255"},
		{"10.0.16.0/20", 256, "10.0.17.0"},
		{"fd00::1:0/116", 4095, "fd00::1:fff"},
		{"10.0.0.7/32", 0, "10.0.0.7"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.cidr)
		a := netip.MustParseAddr(tt.addr)
		if got := ordinalAddr(p, tt.ord); got != a {
			t.Errorf("ordinalAddr(%s, %d) = %s, want %s", p, tt.ord, got, a)
		}
		if got := addrOrdinal(p, a); got != tt.ord {
			t.Errorf("addrOrdinal(%s, %s) = %d, want %d", p, a, got, tt.ord)
		}
	}
	if got := addrOrdinal(netip.MustParsePrefix("10.0.0.64/26"), netip.MustParseAddr("10.0.0.128")); got != -1 {
		t.Errorf("address outside the block: ordinal %d, want -1", got)
	}
}

func TestPoolBlocks(t *testing.T) {
	tests := []struct {
		cidr      string
		blockSize int
		n         uint64
		i         uint64
		want      string
	}{
		{"10.0.0.0/24", 26, 4, 3, "10.0.0.192/26"},
		{"10.0.0.0/16", 0, 1024, 1023, "10.0.255.192/26"},
		{"10.0.0.0/8", 32, 1 << 24, 1<<24 - 1, "10.255.255.255/32"},
		{"fd00::/64", 0, 1 << 58, 5, "fd00::140/122"},
		{"fd00::/48", 116, 1 << 62, 1 << 40, "fd00::10:0:0:0/116"},
		{"fd00::/48", 116, 1 << 62, 1 << 60, "fd00:0:0:100::/116"},
	}
	for _, tt := range tests {
		p, err := parsePool(&api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec: api.IPPoolSpec{CIDR: tt.cidr, BlockSize: tt.blockSize}})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.numBlocks(); got != tt.n {
			t.Errorf("%s: numBlocks = %d, want %d", tt.cidr, got, tt.n)
		}
		if got := p.nthBlock(tt.i).String(); got != tt.want {
			t.Errorf("%s: block %d = %s, want %s", tt.cidr, tt.i, got, tt.want)
		}
	}
}

func TestParsePoolErrors(t *testing.T) {
	tests := []struct {
		spec api.IPPoolSpec
		want string
	}{
		{api.IPPoolSpec{CIDR: "10.0.0.1/24"}, `ippool "p": cidr 10.0.0.1/24 has host bits set`},
		{api.IPPoolSpec{CIDR: "10.0.0.0/24", BlockSize: 19}, `ippool "p": blockSize 19 outside 20-32`},
		{api.IPPoolSpec{CIDR: "10.0.0.0/24", BlockSize: 122}, `ippool "p": blockSize 122 outside 20-32`},
		{api.IPPoolSpec{CIDR: "fd00::/120", BlockSize: 26}, `ippool "p": blockSize 26 outside 116-128`},
		{api.IPPoolSpec{CIDR: "10.0.0.0/28", BlockSize: 26}, `ippool "p": blockSize 26 is larger than the pool 10.0.0.0/28`},
		{api.IPPoolSpec{CIDR: "nope"}, `ippool "p": cidr: netip.ParsePrefix("nope"): no '/'`},
	}
	for _, tt := range tests {
		_, err := parsePool(&api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec})
		if err == nil || err.Error() != tt.want {
			t.Errorf("%+v: error %v, want %s", tt.spec, err, tt.want)
		}
	}
}

// TestBlockJSON pins the stored format to Calico's field names.
func TestBlockJSON(t *testing.T) {
	b := newBlock(netip.MustParsePrefix("10.0.0.0/30"), "node1", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	b.take(netip.MustParsePrefix("10.0.0.0/30"), 1, "k8s-pod-network.c1", map[string]string{"node": "node1", "pod": "p"}, nil)
	b.SequenceNumber = 1
	got, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cidr":"10.0.0.0/30","affinity":"host:node1","affinityClaimTime":"2026-01-02T03:04:05Z",` +
		`"allocations":[0,null,null,null],"unallocated":[1,2,3],` +
		`"attributes":[{"handle_id":"k8s-pod-network.c1","secondary":{"node":"node1","pod":"p"}}],` +
		`"sequenceNumber":1,"sequenceNumberForAllocation":{"0":0},"deleted":false}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("block JSON (-want +got):\n%s", diff)
	}
	// A block as Calico writes it decodes and validates.
	calico := `{"cidr":"10.0.0.0/30","affinity":"host:node1","allocations":[0,null,1,null],"unallocated":[3,1],` +
		`"attributes":[{"handle_id":"a","secondary":null},{"handle_id":"b","secondary":{"pod":"x"}}],` +
		`"sequenceNumber":9,"sequenceNumberForAllocation":{"0":3,"2":8},"deleted":false}`
	cidr, dec, err := decodeBlock(BlockKey(netip.MustParsePrefix("10.0.0.0/30")), []byte(calico))
	if err != nil {
		t.Fatal(err)
	}
	if dec.host() != "node1" || dec.handleOf(2) != "b" || !dec.inUse(0) || dec.inUse(1) || cidr.Bits() != 30 {
		t.Errorf("decoded block wrong: %+v", dec)
	}
	h, _ := json.Marshal(Handle{HandleID: "a", Block: map[string]int{"10.0.0.0/30": 1}})
	if string(h) != `{"handleID":"a","block":{"10.0.0.0/30":1},"deleted":false}` {
		t.Errorf("handle JSON %s", h)
	}
}

func TestSeedSpreadsNodes(t *testing.T) {
	// The block search is deterministic per node and differs across nodes.
	m, _ := newTestIPAM(t, nil, "10.0.0.0/16")
	snap, err := m.snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first := map[netip.Prefix]string{}
	for _, n := range []string{"node-1", "node-2", "node-3", "node-4"} {
		a, err := m.findUsableBlock(t.Context(), snap, snap.pools, n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := m.findUsableBlock(t.Context(), snap, snap.pools, n)
		if a != b {
			t.Errorf("%s: first block %s then %s; want the same", n, a, b)
		}
		if prev, ok := first[a]; ok {
			t.Errorf("%s and %s both start at %s", prev, n, a)
		}
		first[a] = n
	}
}

func TestConfigValidate(t *testing.T) {
	src := &StaticSource{}
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "ipam config: Source is required"},
		{Config{Source: src, MaxRetries: -1}, "ipam config: MaxRetries -1 is negative"},
		{Config{Source: src, Node: "a/b"}, `ipam config: Node: node name "a/b" contains '/' or whitespace`},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%+v) = %v, want %s", tt.cfg, err, tt.want)
		}
	}
	c := Config{Source: src}
	if err := c.Validate(); err != nil || c.MaxRetries != DefaultMaxRetries || c.Logger == nil || c.Now == nil {
		t.Errorf("defaults not applied: %+v, %v", c, err)
	}
	if _, err := New(nil, c); err == nil {
		t.Error("New accepted a nil store")
	}
}
