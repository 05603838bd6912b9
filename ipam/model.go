package ipam

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Key layout, as Calico's etcdv3 backend writes it.
const (
	ipamPrefix     = "/calico/ipam/v2/"
	blockPrefix    = ipamPrefix + "assignment/"
	hostPrefix     = ipamPrefix + "host/"
	handlePrefix   = ipamPrefix + "handle/"
	ConfigKey      = ipamPrefix + "config"
	affinityHost   = "host"
	affinityPrefix = affinityHost + ":"
)

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// cidrName renders a block CIDR as it appears in keys: 10.0.0.0/26 -> 10.0.0.0-26.
func cidrName(p netip.Prefix) string {
	return strings.Replace(p.String(), "/", "-", 1)
}

// parseCIDRName is the inverse of cidrName.
func parseCIDRName(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("block name %q has no '-<prefix length>'", s)
	}
	p, err := netip.ParsePrefix(s[:i] + "/" + s[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("block name %q: %w", s, err)
	}
	return p, nil
}

// BlockKey is the key of the block with the given CIDR.
func BlockKey(cidr netip.Prefix) string {
	return blockPrefix + family(cidr) + "/block/" + cidrName(cidr)
}

// AffinityKey is the key of node's affinity to the block with the given CIDR.
func AffinityKey(node string, cidr netip.Prefix) string {
	return hostPrefix + node + "/" + family(cidr) + "/block/" + cidrName(cidr)
}

// HandleKey is the key of a handle.
func HandleKey(id string) string { return handlePrefix + id }

func affinityListPrefix(node, fam string) string {
	return hostPrefix + node + "/" + fam + "/block/"
}

// parseBlockKey returns the CIDR of a block key.
func parseBlockKey(key string) (netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, blockPrefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%q is not a block key", key)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "block" {
		return netip.Prefix{}, fmt.Errorf("%q is not a block key", key)
	}
	return parseCIDRName(parts[2])
}

// parseAffinityKey returns the node and CIDR of an affinity key.
func parseAffinityKey(key string) (string, netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, hostPrefix)
	if !ok {
		return "", netip.Prefix{}, fmt.Errorf("%q is not an affinity key", key)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[2] != "block" {
		return "", netip.Prefix{}, fmt.Errorf("%q is not an affinity key", key)
	}
	p, err := parseCIDRName(parts[3])
	return parts[0], p, err
}

// Block is the stored form of an IPAM block (Calico's AllocationBlock JSON).
type Block struct {
	CIDR              string     `json:"cidr"`
	Affinity          *string    `json:"affinity"`
	AffinityClaimTime *time.Time `json:"affinityClaimTime,omitempty"`
	// Allocations[ordinal] is an index into Attributes, or nil if free.
	Allocations []*int `json:"allocations"`
	// Unallocated is the FIFO of free ordinals: take from the head, release
	// to the tail.
	Unallocated []int       `json:"unallocated"`
	Attributes  []Attribute `json:"attributes"`
	// SequenceNumber is bumped on every write of the block.
	SequenceNumber uint64 `json:"sequenceNumber"`
	// SequenceNumberForAllocation maps an ordinal (as a decimal string) to
	// the block's sequence number when it was allocated.
	SequenceNumberForAllocation map[string]uint64 `json:"sequenceNumberForAllocation"`
	Deleted                     bool              `json:"deleted"`
}

// Attribute is the owner and metadata of one or more allocations.
type Attribute struct {
	HandleID  *string           `json:"handle_id"`
	Secondary map[string]string `json:"secondary"`
	// ReleasedAt is set when the allocation was released but is still in
	// its cooldown (ipCooldownSeconds): the ordinal stays taken until then.
	ReleasedAt *time.Time `json:"releasedAt,omitempty"`
}

// Affinity states.
const (
	AffinityPending         = "pending"
	AffinityConfirmed       = "confirmed"
	AffinityPendingDeletion = "pendingDeletion"
)

// Affinity is the stored form of a block affinity.
type Affinity struct {
	State   string `json:"state"`
	Node    string `json:"node,omitempty"`
	Type    string `json:"type,omitempty"`
	CIDR    string `json:"cidr,omitempty"`
	Deleted bool   `json:"deleted"`
}

// Handle is the stored form of an IPAM handle: how many addresses the owner
// holds in each block.
type Handle struct {
	HandleID string         `json:"handleID"`
	Block    map[string]int `json:"block"`
	Deleted  bool           `json:"deleted"`
}

// Attribute keys Brindle sets on allocations.
const (
	AttrNode = "node"
)

// newBlock returns an empty block with every ordinal free, in address order.
func newBlock(cidr netip.Prefix, node string, now time.Time) *Block {
	n := blockSize(cidr)
	b := &Block{
		CIDR:                        cidr.String(),
		Allocations:                 make([]*int, n),
		Unallocated:                 make([]int, n),
		Attributes:                  []Attribute{},
		SequenceNumberForAllocation: map[string]uint64{},
	}
	for i := range n {
		b.Unallocated[i] = i
	}
	if node != "" {
		a := affinityPrefix + node
		b.Affinity = &a
		t := now.UTC().Truncate(time.Second)
		b.AffinityClaimTime = &t
	}
	return b
}

// blockSize is the number of addresses in a block; blocks are at most 2^12
// addresses (/20 or /116).
func blockSize(cidr netip.Prefix) int {
	return 1 << (cidr.Addr().BitLen() - cidr.Bits())
}

// host returns the node the block is affine to, or "".
func (b *Block) host() string {
	if b.Affinity != nil {
		if h, ok := strings.CutPrefix(*b.Affinity, affinityPrefix); ok {
			return h
		}
	}
	return ""
}

// prefix parses the block's CIDR.
func (b *Block) prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return p, fmt.Errorf("block cidr %q: %w", b.CIDR, err)
	}
	return p, nil
}

// validate checks the block's internal structure against its key's CIDR.
func (b *Block) validate(cidr netip.Prefix) error {
	if b.CIDR != cidr.String() {
		return fmt.Errorf("block cidr %q does not match its key (%s)", b.CIDR, cidr)
	}
	n := blockSize(cidr)
	if len(b.Allocations) != n {
		return fmt.Errorf("block %s has %d allocation slots, want %d", cidr, len(b.Allocations), n)
	}
	free := make([]bool, n)
	for _, o := range b.Unallocated {
		if o < 0 || o >= n {
			return fmt.Errorf("block %s: unallocated ordinal %d out of range", cidr, o)
		}
		if free[o] {
			return fmt.Errorf("block %s: ordinal %d listed twice in unallocated", cidr, o)
		}
		if b.Allocations[o] != nil {
			return fmt.Errorf("block %s: ordinal %d is both allocated and unallocated", cidr, o)
		}
		free[o] = true
	}
	for o, a := range b.Allocations {
		if a == nil {
			if !free[o] {
				return fmt.Errorf("block %s: ordinal %d is neither allocated nor unallocated", cidr, o)
			}
			continue
		}
		if *a < 0 || *a >= len(b.Attributes) {
			return fmt.Errorf("block %s: ordinal %d has attribute index %d out of range", cidr, o, *a)
		}
	}
	return nil
}

// ordinalAddr returns the address at ordinal o of cidr. Blocks are aligned
// and hold at most 2^12 addresses, so the ordinal is the low bits.
func ordinalAddr(cidr netip.Prefix, o int) netip.Addr {
	a := cidr.Masked().Addr().As16()
	a[15] |= byte(o)
	a[14] |= byte(o >> 8)
	r := netip.AddrFrom16(a)
	if cidr.Addr().Is4() {
		return r.Unmap()
	}
	return r
}

// addrOrdinal returns the ordinal of addr in cidr, or -1 if outside it.
func addrOrdinal(cidr netip.Prefix, addr netip.Addr) int {
	if !cidr.Contains(addr) {
		return -1
	}
	a := addr.As16()
	return (int(a[14])<<8 | int(a[15])) & (blockSize(cidr) - 1)
}

func seqKey(o int) string { return strconv.Itoa(o) }

// inUse reports whether ordinal o is allocated and not cooling down.
func (b *Block) inUse(o int) bool {
	a := b.Allocations[o]
	return a != nil && b.Attributes[*a].ReleasedAt == nil
}

// handleOf returns the handle of ordinal o, or "".
func (b *Block) handleOf(o int) string {
	a := b.Allocations[o]
	if a == nil || b.Attributes[*a].HandleID == nil {
		return ""
	}
	return *b.Attributes[*a].HandleID
}

// clone deep-copies the block so a failed write never leaves a mutated copy.
func (b *Block) clone() *Block {
	c := *b
	if b.Affinity != nil {
		a := *b.Affinity
		c.Affinity = &a
	}
	if b.AffinityClaimTime != nil {
		t := *b.AffinityClaimTime
		c.AffinityClaimTime = &t
	}
	c.Allocations = make([]*int, len(b.Allocations))
	for i, a := range b.Allocations {
		if a != nil {
			v := *a
			c.Allocations[i] = &v
		}
	}
	c.Unallocated = append([]int{}, b.Unallocated...)
	c.Attributes = make([]Attribute, len(b.Attributes))
	for i, at := range b.Attributes {
		c.Attributes[i] = at.clone()
	}
	c.SequenceNumberForAllocation = make(map[string]uint64, len(b.SequenceNumberForAllocation))
	for k, v := range b.SequenceNumberForAllocation {
		c.SequenceNumberForAllocation[k] = v
	}
	return &c
}

func (a Attribute) clone() Attribute {
	c := a
	if a.HandleID != nil {
		h := *a.HandleID
		c.HandleID = &h
	}
	if a.Secondary != nil {
		c.Secondary = make(map[string]string, len(a.Secondary))
		for k, v := range a.Secondary {
			c.Secondary[k] = v
		}
	}
	if a.ReleasedAt != nil {
		t := *a.ReleasedAt
		c.ReleasedAt = &t
	}
	return c
}

// attrIndex returns the index of an attribute equal to (handle, secondary)
// that is not cooling down, appending one if there is none.
func (b *Block) attrIndex(handle string, secondary map[string]string) int {
	for i, a := range b.Attributes {
		if a.ReleasedAt == nil && a.HandleID != nil && *a.HandleID == handle && mapsEqual(a.Secondary, secondary) {
			return i
		}
	}
	h := handle
	sec := make(map[string]string, len(secondary))
	for k, v := range secondary {
		sec[k] = v
	}
	b.Attributes = append(b.Attributes, Attribute{HandleID: &h, Secondary: sec})
	return len(b.Attributes) - 1
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// take allocates up to n free, unreserved ordinals from the head of the
// FIFO, recording handle and attributes. It returns the ordinals taken.
func (b *Block) take(cidr netip.Prefix, n int, handle string, secondary map[string]string, rs reservations) []int {
	var got []int
	keep := b.Unallocated[:0:0]
	for _, o := range b.Unallocated {
		if len(got) < n && !rs.contains(ordinalAddr(cidr, o)) {
			got = append(got, o)
			continue
		}
		keep = append(keep, o)
	}
	if len(got) == 0 {
		return nil
	}
	b.Unallocated = keep
	idx := b.attrIndex(handle, secondary)
	for _, o := range got {
		v := idx
		b.Allocations[o] = &v
		b.SequenceNumberForAllocation[seqKey(o)] = b.SequenceNumber
	}
	return got
}

// takeOrdinal allocates one specific free ordinal.
func (b *Block) takeOrdinal(o int, handle string, secondary map[string]string) {
	for i, u := range b.Unallocated {
		if u == o {
			b.Unallocated = append(b.Unallocated[:i:i], b.Unallocated[i+1:]...)
			break
		}
	}
	idx := b.attrIndex(handle, secondary)
	b.Allocations[o] = &idx
	b.SequenceNumberForAllocation[seqKey(o)] = b.SequenceNumber
}

// free releases ordinal o: with a cooldown it stays taken, stamped with the
// release time; otherwise it goes to the tail of the FIFO.
func (b *Block) free(o int, cooldown time.Duration, now time.Time) {
	if cooldown > 0 {
		at := b.Attributes[*b.Allocations[o]].clone()
		t := now.UTC()
		at.ReleasedAt = &t
		b.Attributes = append(b.Attributes, at)
		idx := len(b.Attributes) - 1
		b.Allocations[o] = &idx
		return
	}
	b.Allocations[o] = nil
	b.Unallocated = append(b.Unallocated, o)
	delete(b.SequenceNumberForAllocation, seqKey(o))
}

// expireCooldowns returns ordinals whose cooldown has passed to the FIFO.
// It reports whether anything changed.
func (b *Block) expireCooldowns(cooldown time.Duration, now time.Time) bool {
	changed := false
	for o, a := range b.Allocations {
		if a == nil {
			continue
		}
		r := b.Attributes[*a].ReleasedAt
		if r != nil && !now.Before(r.Add(cooldown)) {
			b.Allocations[o] = nil
			b.Unallocated = append(b.Unallocated, o)
			delete(b.SequenceNumberForAllocation, seqKey(o))
			changed = true
		}
	}
	return changed
}

// compact drops attributes no allocation refers to and renumbers the rest.
func (b *Block) compact() {
	used := make([]bool, len(b.Attributes))
	for _, a := range b.Allocations {
		if a != nil {
			used[*a] = true
		}
	}
	remap := make([]int, len(b.Attributes))
	var kept []Attribute
	for i, at := range b.Attributes {
		if used[i] {
			remap[i] = len(kept)
			kept = append(kept, at)
		}
	}
	if kept == nil {
		kept = []Attribute{}
	}
	for o, a := range b.Allocations {
		if a != nil {
			v := remap[*a]
			b.Allocations[o] = &v
		}
	}
	b.Attributes = kept
}

// empty reports whether no ordinal is taken (in use or cooling down).
func (b *Block) empty() bool {
	for _, a := range b.Allocations {
		if a != nil {
			return false
		}
	}
	return true
}

// freeCount is the number of ordinals that could be allocated now.
func (b *Block) freeCount(cidr netip.Prefix, rs reservations) int {
	n := 0
	for _, o := range b.Unallocated {
		if !rs.contains(ordinalAddr(cidr, o)) {
			n++
		}
	}
	return n
}
