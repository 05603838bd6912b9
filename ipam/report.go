package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Usage counts addresses. Free = Total - InUse - Cooling - Reserved.
// Counts saturate at 2^64-1 (only huge IPv6 pools get there).
type Usage struct {
	Total    uint64 `json:"total"`
	InUse    uint64 `json:"inUse"`
	Cooling  uint64 `json:"cooling,omitempty"`
	Reserved uint64 `json:"reserved"`
	Free     uint64 `json:"free"`
}

func (u *Usage) finish() {
	used := u.InUse + u.Cooling + u.Reserved
	if used > u.Total {
		used = u.Total
	}
	u.Free = u.Total - used
}

// BlockUsage is one block's line in `ipam show`.
type BlockUsage struct {
	CIDR     string `json:"cidr"`
	Affinity string `json:"affinity,omitempty"` // "host:<node>" or ""
	Usage
}

// PoolUsage is one pool's line in `ipam show`, with its blocks.
type PoolUsage struct {
	Name      string `json:"name"`
	CIDR      string `json:"cidr"`
	Disabled  bool   `json:"disabled,omitempty"`
	BlockSize int    `json:"blockSize"`
	Usage
	Blocks []BlockUsage `json:"blocks"`
}

// ShowReport is what `brindlectl ipam show` prints.
type ShowReport struct {
	Pools []PoolUsage `json:"pools"`
	// Orphans are blocks in no pool (also a `check` problem).
	Orphans []BlockUsage `json:"orphans,omitempty"`
}

// Show reports address usage per pool and per block.
func (m *IPAM) Show(ctx context.Context) (*ShowReport, error) {
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: show: %w", err)
	}
	blocks, err := m.listBlocks(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: show: %w", err)
	}
	rep := &ShowReport{Pools: []PoolUsage{}}
	idx := map[*pool]int{}
	for _, p := range snap.pools {
		pu := PoolUsage{Name: p.name, CIDR: p.cidr.String(), Disabled: p.disabled, BlockSize: p.blockBits,
			Blocks: []BlockUsage{}}
		pu.Total = prefixSize(p.cidr)
		pu.Reserved = snap.rs.countIn(p.cidr)
		idx[p] = len(rep.Pools)
		rep.Pools = append(rep.Pools, pu)
	}
	for _, kb := range blocks {
		bu := BlockUsage{CIDR: kb.cidr.String(), Usage: Usage{Total: uint64(blockSize(kb.cidr))}}
		if kb.block.Affinity != nil {
			bu.Affinity = *kb.block.Affinity
		}
		var inUseReserved uint64
		for o, a := range kb.block.Allocations {
			addr := ordinalAddr(kb.cidr, o)
			switch {
			case a == nil:
				if snap.rs.contains(addr) {
					bu.Reserved++
				}
			case kb.block.Attributes[*a].ReleasedAt != nil:
				bu.Cooling++
			default:
				bu.InUse++
				if snap.rs.contains(addr) {
					inUseReserved++
				}
			}
		}
		bu.finish()
		p := snap.poolFor(kb.cidr.Addr())
		if p == nil {
			rep.Orphans = append(rep.Orphans, bu)
			continue
		}
		pu := &rep.Pools[idx[p]]
		pu.InUse += bu.InUse
		pu.Cooling += bu.Cooling
		pu.Reserved -= min(pu.Reserved, inUseReserved) // counted as in use
		pu.Blocks = append(pu.Blocks, bu)
	}
	byAddr := func(a, b BlockUsage) int {
		return netip.MustParsePrefix(a.CIDR).Addr().Compare(netip.MustParsePrefix(b.CIDR).Addr())
	}
	for i := range rep.Pools {
		rep.Pools[i].finish()
		slices.SortFunc(rep.Pools[i].Blocks, byAddr)
	}
	slices.SortFunc(rep.Orphans, byAddr)
	return rep, nil
}

func prefixSize(p netip.Prefix) uint64 {
	h := p.Addr().BitLen() - p.Bits()
	if h >= 64 {
		return ^uint64(0)
	}
	return 1 << h
}

// countIn counts reserved addresses inside p, counting overlaps once.
func (rs reservations) countIn(p netip.Prefix) uint64 {
	var in []netip.Prefix
	for _, r := range rs {
		switch {
		case r.Addr().BitLen() != p.Addr().BitLen():
		case r.Bits() <= p.Bits() && r.Contains(p.Addr()):
			in = append(in, p)
		case r.Bits() > p.Bits() && p.Contains(r.Addr()):
			in = append(in, r)
		}
	}
	// Drop prefixes contained in another (prefixes nest or are disjoint).
	slices.SortFunc(in, func(a, b netip.Prefix) int { return a.Bits() - b.Bits() })
	var kept []netip.Prefix
	var n uint64
	for _, r := range in {
		dup := false
		for _, k := range kept {
			if k.Contains(r.Addr()) {
				dup = true
				break
			}
		}
		if !dup {
			kept = append(kept, r)
			if s := prefixSize(r); n+s < n {
				n = ^uint64(0)
			} else {
				n += s
			}
		}
	}
	return n
}

// ProblemKind classifies what `ipam check` finds.
type ProblemKind string

// Problem kinds.
const (
	// An allocation whose handle does not exist, or does not count it.
	ProblemAllocationWithoutHandle ProblemKind = "allocation-without-handle"
	// A handle counting more addresses in a block than the block holds
	// for it (a leak: release-by-handle would find nothing).
	ProblemHandleWithoutAllocation ProblemKind = "handle-without-allocation"
	// A confirmed affinity whose block does not exist.
	ProblemAffinityWithoutBlock ProblemKind = "affinity-without-block"
	// A pending or pendingDeletion affinity (left by an interrupted claim
	// or release; harmless but worth cleaning).
	ProblemAffinityNotConfirmed ProblemKind = "affinity-not-confirmed"
	// A block affine to a node with no confirmed affinity for it.
	ProblemBlockWithoutAffinity ProblemKind = "block-without-affinity"
	// A block in no configured pool, or not of its pool's block size.
	ProblemBlockOutsidePools ProblemKind = "block-outside-pools"
	// Blocks that overlap each other.
	ProblemBlockOverlap ProblemKind = "block-overlap"
	// A value that does not decode or is internally inconsistent.
	ProblemCorrupt ProblemKind = "corrupt"
)

// Problem is one inconsistency.
type Problem struct {
	Kind    ProblemKind `json:"kind"`
	Key     string      `json:"key"`
	Block   string      `json:"block,omitempty"`
	Address string      `json:"address,omitempty"`
	Handle  string      `json:"handle,omitempty"`
	Node    string      `json:"node,omitempty"`
	Detail  string      `json:"detail"`
}

func (p Problem) String() string {
	return string(p.Kind) + " " + p.Key + ": " + p.Detail
}

// CheckReport is what `brindlectl ipam check` prints.
type CheckReport struct {
	Blocks      int       `json:"blocks"`
	Handles     int       `json:"handles"`
	Affinities  int       `json:"affinities"`
	Allocations int       `json:"allocations"`
	Problems    []Problem `json:"problems"`
}

// Check cross-checks blocks, handles and affinities and reports every
// inconsistency. It reads a point-in-time view that is not atomic across
// keys, so on a busy cluster a problem may be an allocation in flight: run
// it again before acting.
func (m *IPAM) Check(ctx context.Context) (*CheckReport, error) {
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: check: %w", err)
	}
	rep := &CheckReport{Problems: []Problem{}}
	add := func(p Problem) { rep.Problems = append(rep.Problems, p) }

	bkvs, err := m.store.List(ctx, blockPrefix)
	if err != nil {
		return nil, fmt.Errorf("ipam: check: list blocks: %w", err)
	}
	hkvs, err := m.store.List(ctx, handlePrefix)
	if err != nil {
		return nil, fmt.Errorf("ipam: check: list handles: %w", err)
	}
	akvs, err := m.store.List(ctx, hostPrefix)
	if err != nil {
		return nil, fmt.Errorf("ipam: check: list affinities: %w", err)
	}
	rep.Blocks, rep.Handles, rep.Affinities = len(bkvs), len(hkvs), len(akvs)

	// Handles: handle -> block -> count.
	handles := map[string]map[string]int{}
	for _, kv := range hkvs {
		id := strings.TrimPrefix(kv.Key, handlePrefix)
		var h Handle
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			add(Problem{Kind: ProblemCorrupt, Key: kv.Key, Handle: id, Detail: err.Error()})
			continue
		}
		handles[id] = h.Block
	}
	// Affinities: node -> confirmed blocks.
	confirmed := map[string]map[netip.Prefix]bool{}
	type affRef struct{ key, node string }
	var affs []affRef
	var affCIDRs []netip.Prefix
	for _, kv := range akvs {
		node, cidr, err := parseAffinityKey(kv.Key)
		if err != nil {
			add(Problem{Kind: ProblemCorrupt, Key: kv.Key, Detail: err.Error()})
			continue
		}
		var a Affinity
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			add(Problem{Kind: ProblemCorrupt, Key: kv.Key, Node: node, Block: cidr.String(), Detail: err.Error()})
			continue
		}
		if a.State != AffinityConfirmed {
			add(Problem{Kind: ProblemAffinityNotConfirmed, Key: kv.Key, Node: node, Block: cidr.String(),
				Detail: fmt.Sprintf("affinity of node %q to %s is %q", node, cidr, a.State)})
			continue
		}
		if confirmed[node] == nil {
			confirmed[node] = map[netip.Prefix]bool{}
		}
		confirmed[node][cidr] = true
		affs = append(affs, affRef{kv.Key, node})
		affCIDRs = append(affCIDRs, cidr)
	}

	// Blocks: count allocations per handle and compare.
	seen := map[string]map[string]int{} // handle -> block -> count
	exists := map[netip.Prefix]bool{}
	var cidrs []netip.Prefix
	for _, kv := range bkvs {
		cidr, b, err := decodeBlock(kv.Key, kv.Value)
		if err != nil {
			add(Problem{Kind: ProblemCorrupt, Key: kv.Key, Detail: err.Error()})
			continue
		}
		exists[cidr] = true
		cidrs = append(cidrs, cidr)
		if p := snap.poolFor(cidr.Addr()); p == nil || p.blockBits != cidr.Bits() {
			d := fmt.Sprintf("block %s is in no configured pool", cidr)
			if p != nil {
				d = fmt.Sprintf("block %s is in pool %s whose blocks are /%d", cidr, p, p.blockBits)
			}
			add(Problem{Kind: ProblemBlockOutsidePools, Key: kv.Key, Block: cidr.String(), Detail: d})
		}
		if h := b.host(); h != "" && !confirmed[h][cidr] {
			add(Problem{Kind: ProblemBlockWithoutAffinity, Key: kv.Key, Block: cidr.String(), Node: h,
				Detail: fmt.Sprintf("block %s is affine to node %q, which has no confirmed affinity for it", cidr, h)})
		}
		for o := range b.Allocations {
			if !b.inUse(o) {
				continue
			}
			rep.Allocations++
			h := b.handleOf(o)
			addr := ordinalAddr(cidr, o)
			if h == "" {
				add(Problem{Kind: ProblemAllocationWithoutHandle, Key: kv.Key, Block: cidr.String(), Address: addr.String(),
					Detail: fmt.Sprintf("%s is allocated with no handle", addr)})
				continue
			}
			if seen[h] == nil {
				seen[h] = map[string]int{}
			}
			seen[h][cidr.String()]++
		}
	}
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for i := 1; i < len(cidrs); i++ {
		if cidrs[i-1].Overlaps(cidrs[i]) {
			add(Problem{Kind: ProblemBlockOverlap, Key: BlockKey(cidrs[i]), Block: cidrs[i].String(),
				Detail: fmt.Sprintf("block %s overlaps block %s", cidrs[i], cidrs[i-1])})
		}
	}
	for i, a := range affs {
		if !exists[affCIDRs[i]] {
			add(Problem{Kind: ProblemAffinityWithoutBlock, Key: a.key, Node: a.node, Block: affCIDRs[i].String(),
				Detail: fmt.Sprintf("node %q has a confirmed affinity to %s, which does not exist", a.node, affCIDRs[i])})
		}
	}
	// Compare handle counts with what the blocks hold.
	for _, h := range sortedKeys(seen) {
		for _, blk := range sortedKeys(seen[h]) {
			got, want := seen[h][blk], handles[h][blk]
			if want >= got {
				continue
			}
			d := fmt.Sprintf("block %s holds %d address(es) for handle %q, which counts %d", blk, got, h, want)
			if _, ok := handles[h]; !ok {
				d = fmt.Sprintf("block %s holds %d address(es) for handle %q, which does not exist", blk, got, h)
			}
			add(Problem{Kind: ProblemAllocationWithoutHandle, Key: HandleKey(h), Block: blk, Handle: h, Detail: d})
		}
	}
	for _, h := range sortedKeys(handles) {
		for _, blk := range sortedKeys(handles[h]) {
			want, got := handles[h][blk], seen[h][blk]
			if want > got {
				add(Problem{Kind: ProblemHandleWithoutAllocation, Key: HandleKey(h), Block: blk, Handle: h,
					Detail: fmt.Sprintf("handle %q counts %d address(es) in block %s, which holds %d for it", h, want, blk, got)})
			}
		}
	}
	return rep, nil
}

// BlocksForHost returns the blocks node holds a confirmed affinity for, in
// address order: the BGP speaker advertises one route per block.
func (m *IPAM) BlocksForHost(ctx context.Context, node string) ([]netip.Prefix, error) {
	if err := validNode(node); err != nil {
		return nil, fmt.Errorf("ipam: blocks for host: %w", err)
	}
	v4, err := m.affineBlocks(ctx, node, true)
	if err != nil {
		return nil, fmt.Errorf("ipam: blocks for host: %w", err)
	}
	v6, err := m.affineBlocks(ctx, node, false)
	if err != nil {
		return nil, fmt.Errorf("ipam: blocks for host: %w", err)
	}
	out := append(v4, v6...)
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out, nil
}

// BorrowedIPs returns, in address order, the addresses allocated to node
// (by the allocation's "node" attribute) in blocks not affine to it: each
// needs a /32 (/128) route of its own.
func (m *IPAM) BorrowedIPs(ctx context.Context, node string) ([]netip.Addr, error) {
	if err := validNode(node); err != nil {
		return nil, fmt.Errorf("ipam: borrowed ips: %w", err)
	}
	blocks, err := m.listBlocks(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: borrowed ips: %w", err)
	}
	var out []netip.Addr
	for _, kb := range blocks {
		if kb.block.host() == node {
			continue
		}
		for o, a := range kb.block.Allocations {
			if a != nil && kb.block.inUse(o) && kb.block.Attributes[*a].Secondary[AttrNode] == node {
				out = append(out, ordinalAddr(kb.cidr, o))
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}
