package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
)

// Errors callers may test for with errors.Is.
var (
	// ErrExhausted: no free address in any usable pool.
	ErrExhausted = errors.New("no free address")
	// ErrAlreadyAllocated: AssignIP of an address someone holds.
	ErrAlreadyAllocated = errors.New("address already allocated")
	// ErrNotInPool: an address outside every configured pool.
	ErrNotInPool = errors.New("address not in any configured ip pool")
	// ErrBadSequenceNumber: a release whose sequence number does not match
	// the allocation's (it was released and re-allocated in between).
	ErrBadSequenceNumber = errors.New("allocation sequence number does not match")
	// ErrHandleNotFound: ReleaseByHandle of a handle that does not exist.
	ErrHandleNotFound = errors.New("handle not found")
	// ErrWrongHandle: a release naming a handle other than the holder's.
	ErrWrongHandle = errors.New("address held by another handle")
)

// IPAM allocates workload addresses from IP pools. It keeps no state of its
// own between calls: everything lives in the Store, and concurrent calls (in
// this process or on other hosts) coordinate only through conditional writes.
type IPAM struct {
	store Store
	cfg   Config
	log   *slog.Logger
}

// New returns an IPAM over store.
func New(store Store, cfg Config) (*IPAM, error) {
	if store == nil {
		return nil, errors.New("ipam: store is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &IPAM{store: store, cfg: cfg, log: cfg.Logger}, nil
}

// AutoAssignArgs is a request for automatically chosen addresses.
type AutoAssignArgs struct {
	// Num4 and Num6 are how many IPv4 and IPv6 addresses to assign.
	Num4, Num6 int
	// HandleID owns the addresses (CNI: "<network>.<containerID>").
	HandleID string
	// Attrs are stored with each allocation (pod, namespace, ...). The
	// "node" attribute defaults to the node.
	Attrs map[string]string
	// Pools restricts assignment to these pools, by name or CIDR; empty
	// means every enabled pool usable by the node.
	Pools []string
	// Node is the requesting host; empty means Config.Node.
	Node string
	// MaxBlocksPerHost caps the node's blocks; 0 means the
	// IPAMConfiguration's value, then DefaultMaxBlocksPerHost.
	MaxBlocksPerHost int
	// IntendedUse is checked against pools' allowedUses; empty means
	// Workload.
	IntendedUse string
}

// AutoAssign assigns addresses and returns them as block-masked prefixes
// (the address with its block's prefix length). It is all or nothing: on any
// error, addresses it already took are released again.
func (m *IPAM) AutoAssign(ctx context.Context, args AutoAssignArgs) (out []netip.Prefix, err error) {
	if err := validHandle(args.HandleID); err != nil {
		return nil, fmt.Errorf("ipam: auto-assign: %w", err)
	}
	if args.Num4 < 0 || args.Num6 < 0 {
		return nil, fmt.Errorf("ipam: auto-assign: negative count (Num4 %d, Num6 %d)", args.Num4, args.Num6)
	}
	if args.MaxBlocksPerHost < 0 {
		return nil, fmt.Errorf("ipam: auto-assign: MaxBlocksPerHost %d is negative", args.MaxBlocksPerHost)
	}
	node, err := m.node(args.Node)
	if err != nil {
		return nil, fmt.Errorf("ipam: auto-assign: %w", err)
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: auto-assign: %w", err)
	}
	attrs := withNode(args.Attrs, node)
	defer func() {
		if err != nil && len(out) > 0 {
			m.rollback(ctx, args.HandleID, out)
			out = nil
		}
	}()
	for _, fam := range []struct {
		v4 bool
		n  int
	}{{true, args.Num4}, {false, args.Num6}} {
		if fam.n == 0 {
			continue
		}
		got, err := m.autoAssignFamily(ctx, snap, args, node, attrs, fam.v4, fam.n)
		out = append(out, got...)
		if err != nil {
			return out, fmt.Errorf("ipam: auto-assign: %w", err)
		}
	}
	return out, nil
}

func (m *IPAM) node(n string) (string, error) {
	if n == "" {
		n = m.cfg.Node
	}
	if err := validNode(n); err != nil {
		return "", err
	}
	return n, nil
}

func withNode(attrs map[string]string, node string) map[string]string {
	out := make(map[string]string, len(attrs)+1)
	for k, v := range attrs {
		out[k] = v
	}
	if _, ok := out[AttrNode]; !ok {
		out[AttrNode] = node
	}
	return out
}

// rollback releases what a failed AutoAssign took.
func (m *IPAM) rollback(ctx context.Context, handle string, got []netip.Prefix) {
	opts := make([]ReleaseOptions, len(got))
	for i, p := range got {
		opts[i] = ReleaseOptions{Address: p.Addr(), HandleID: handle}
	}
	if _, err := m.ReleaseIPs(context.WithoutCancel(ctx), opts...); err != nil {
		m.log.Error("ipam: rolling back a failed auto-assign", "handle", handle, "err", err)
	}
}

// usablePools resolves the pools of one family a request may use.
func (m *IPAM) usablePools(ctx context.Context, snap *snapshot, args AutoAssignArgs, node string, v4 bool) ([]*pool, error) {
	use := args.IntendedUse
	if use == "" {
		use = "Workload"
	}
	fam := "IPv6"
	if v4 {
		fam = "IPv4"
	}
	var cands []*pool
	if len(args.Pools) == 0 {
		for _, p := range snap.pools {
			if p.cidr.Addr().Is4() == v4 && !p.disabled {
				cands = append(cands, p)
			}
		}
	} else {
		for _, want := range args.Pools {
			var found *pool
			for _, p := range snap.pools {
				if p.name == want || p.cidr.String() == want {
					found = p
					break
				}
			}
			if found == nil {
				return nil, fmt.Errorf("requested pool %q does not exist", want)
			}
			if found.cidr.Addr().Is4() != v4 {
				continue
			}
			if found.disabled {
				return nil, fmt.Errorf("requested pool %s is disabled", found)
			}
			cands = append(cands, found)
		}
	}
	var labels map[string]string
	var out []*pool
	var skipped []string
	for _, p := range cands {
		okUse := false
		for _, u := range p.uses {
			okUse = okUse || u == use
		}
		if !okUse {
			skipped = append(skipped, p.String()+": allowedUses has no "+use)
			continue
		}
		if labels == nil {
			l, err := m.cfg.Source.NodeLabels(ctx, node)
			if err != nil {
				return nil, fmt.Errorf("read labels of node %q: %w", node, err)
			}
			labels = l
			if labels == nil {
				labels = map[string]string{}
			}
		}
		if !p.nodeSel.Evaluate(labels) {
			skipped = append(skipped, p.String()+": nodeSelector does not match node "+node)
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no enabled %s pool usable by node %q (%s)", fam, node, strings.Join(skipped, "; "))
		}
		return nil, fmt.Errorf("no enabled %s pool usable by node %q", fam, node)
	}
	return out, nil
}

func inPools(pools []*pool, block netip.Prefix) *pool {
	for _, p := range pools {
		if p.cidr.Contains(block.Addr()) && p.blockBits == block.Bits() {
			return p
		}
	}
	return nil
}

func (m *IPAM) autoAssignFamily(ctx context.Context, snap *snapshot, args AutoAssignArgs, node string,
	attrs map[string]string, v4 bool, n int) ([]netip.Prefix, error) {
	pools, err := m.usablePools(ctx, snap, args, node, v4)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	take := func(block netip.Prefix, affine string) error {
		addrs, err := m.assignFromBlock(ctx, snap, block, n-len(out), args.HandleID, attrs, affine)
		for _, a := range addrs {
			out = append(out, netip.PrefixFrom(a, block.Bits()))
		}
		return err
	}

	// 1. The node's own confirmed blocks; 2. when they are full, claim a
	// new block and go round again (the new block is now one of ours).
	maxBlocks := args.MaxBlocksPerHost
	if maxBlocks == 0 {
		maxBlocks = snap.maxBlocks
	}
	if maxBlocks == 0 {
		maxBlocks = DefaultMaxBlocksPerHost
	}
	full := map[netip.Prefix]bool{}
	why := ""
	for attempt := 0; ; attempt++ {
		if attempt > m.cfg.MaxRetries {
			return out, fmt.Errorf("gave up claiming a block for node %q after %d attempts", node, attempt)
		}
		owned, err := m.affineBlocks(ctx, node, v4)
		if err != nil {
			return out, err
		}
		for _, b := range owned {
			if len(out) == n {
				return out, nil
			}
			if full[b] || inPools(pools, b) == nil {
				continue
			}
			if err := take(b, node); err != nil {
				return out, err
			}
			if len(out) < n {
				full[b] = true
			}
		}
		if len(out) == n {
			return out, nil
		}
		if !snap.autoAlloc {
			why = "autoAllocateBlocks is false"
			break
		}
		if len(owned) >= maxBlocks {
			why = fmt.Sprintf("node %q holds %d blocks (maxBlocksPerHost %d)", node, len(owned), maxBlocks)
			break
		}
		block, err := m.findUsableBlock(ctx, snap, pools, node)
		if err != nil {
			return out, err
		}
		if !block.IsValid() {
			why = "every block is claimed"
			break
		}
		if err := m.claimBlock(ctx, block, node); err != nil && !errors.Is(err, errClaimedByOther) {
			return out, err
		}
	}

	// 3. Borrow from any block in the pools, unless affinity is strict.
	if len(out) < n && !snap.strict {
		blocks, err := m.listBlocks(ctx)
		if err != nil {
			return out, err
		}
		for _, kb := range blocks {
			if len(out) == n {
				break
			}
			if kb.cidr.Addr().Is4() != v4 || inPools(pools, kb.cidr) == nil || kb.block.freeCount(kb.cidr, snap.rs) == 0 {
				continue
			}
			if err := take(kb.cidr, ""); err != nil {
				return out, err
			}
		}
	} else if len(out) < n && snap.strict {
		why += "; strictAffinity forbids borrowing"
	}
	if len(out) < n {
		names := ""
		for i, p := range pools {
			if i > 0 {
				names += ", "
			}
			names += p.String()
		}
		return out, fmt.Errorf("%w: assigned %d of %d requested %s addresses for node %q from pool(s) %s (%s)",
			ErrExhausted, len(out), n, famName(v4), node, names, why)
	}
	return out, nil
}

func famName(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

// affineBlocks lists the CIDRs of node's confirmed affinities of a family.
func (m *IPAM) affineBlocks(ctx context.Context, node string, v4 bool) ([]netip.Prefix, error) {
	fam := "ipv6"
	if v4 {
		fam = "ipv4"
	}
	kvs, err := m.store.List(ctx, affinityListPrefix(node, fam))
	if err != nil {
		return nil, fmt.Errorf("list affinities of node %q: %w", node, err)
	}
	var out []netip.Prefix
	for _, kv := range kvs {
		_, cidr, err := parseAffinityKey(kv.Key)
		if err != nil {
			m.log.Warn("ipam: skipping bad affinity key", "key", kv.Key, "err", err)
			continue
		}
		var a Affinity
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			m.log.Warn("ipam: skipping bad affinity", "key", kv.Key, "err", err)
			continue
		}
		if a.State == AffinityConfirmed && !a.Deleted {
			out = append(out, cidr)
		}
	}
	return out, nil
}

// seed makes a node's block search deterministic and different per node.
func seed(node string) uint64 {
	h := fnv.New32()
	h.Write([]byte(node))
	return uint64(h.Sum32())
}

// EmptyBlockMinReclaimAge is how long a block must have been claimed
// before another node may take it over when it is empty.
const EmptyBlockMinReclaimAge = time.Minute

// findUsableBlock picks an unclaimed block: for each pool in turn, start at
// a block chosen by a generator seeded with the node name and walk the pool
// (wrapping), skipping existing and wholly reserved blocks. If there is
// none, it takes over an empty block another node claimed more than
// EmptyBlockMinReclaimAge ago. It returns the zero Prefix if there is none.
func (m *IPAM) findUsableBlock(ctx context.Context, snap *snapshot, pools []*pool, node string) (netip.Prefix, error) {
	blocks, err := m.listBlocks(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	exists := make(map[netip.Prefix]bool, len(blocks))
	for _, b := range blocks {
		exists[b.cidr] = true
	}
	rng := rand.New(rand.NewPCG(seed(node), 0))
	for _, p := range pools {
		nb := p.numBlocks()
		start := rng.Uint64N(nb)
		for k := uint64(0); k < nb; k++ {
			if k&1023 == 1023 {
				if err := ctx.Err(); err != nil {
					return netip.Prefix{}, err
				}
			}
			b := p.nthBlock((start + k) % nb)
			if exists[b] || snap.rs.covers(b) {
				continue
			}
			return b, nil
		}
	}
	now := m.cfg.Now()
	for _, kb := range blocks {
		owner := kb.block.host()
		if owner == "" || owner == node || !kb.block.empty() || inPools(pools, kb.cidr) == nil || snap.rs.covers(kb.cidr) {
			continue
		}
		if t := kb.block.AffinityClaimTime; t != nil && now.Sub(*t) < EmptyBlockMinReclaimAge {
			continue
		}
		if err := m.reclaimEmptyBlock(ctx, kb, owner); err != nil {
			if retryable(err) || errors.Is(err, ErrNotFound) {
				m.log.Debug("ipam: empty block changed while reclaiming it", "block", kb.cidr, "owner", owner, "err", err)
				continue
			}
			return netip.Prefix{}, fmt.Errorf("reclaim empty block %s from node %q: %w", kb.cidr, owner, err)
		}
		m.log.Info("ipam: reclaimed empty block", "block", kb.cidr, "from", owner, "for", node)
		return kb.cidr, nil
	}
	return netip.Prefix{}, nil
}

// reclaimEmptyBlock removes owner's claim on an empty block so another node
// can claim it: the owner's affinity goes to pendingDeletion (so the owner
// stops using the block), the block is deleted at the revision it was read
// empty at, then the affinity is deleted. If the block changed, the
// affinity is put back.
func (m *IPAM) reclaimEmptyBlock(ctx context.Context, kb keyedBlock, owner string) error {
	akey := AffinityKey(owner, kb.cidr)
	raw, arev, err := m.store.Get(ctx, akey)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	var a Affinity
	if err == nil {
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("affinity %s: %w", akey, err)
		}
		pd := a
		pd.State = AffinityPendingDeletion
		val, _ := json.Marshal(pd)
		if arev, err = m.store.Update(ctx, akey, val, arev); err != nil {
			return err
		}
	} else {
		arev = 0
	}
	if err := m.store.Delete(ctx, BlockKey(kb.cidr), kb.rev); err != nil {
		if arev != 0 {
			val, _ := json.Marshal(a)
			if _, rerr := m.store.Update(context.WithoutCancel(ctx), akey, val, arev); rerr != nil {
				m.log.Warn("ipam: could not restore affinity after a failed reclaim", "key", akey, "err", rerr)
			}
		}
		return err
	}
	if arev != 0 {
		if err := m.store.Delete(ctx, akey, arev); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

var errClaimedByOther = errors.New("block claimed by another node")

// claimBlock makes node the owner of block in two phases: a pending
// affinity, then the block (created with node's affinity), then the affinity
// confirmed. If another node created the block first, the pending affinity
// is removed and errClaimedByOther returned. On any other failure what this
// call wrote is undone (best effort): the block it created (still empty)
// and its pending affinity. A pending affinity counts as absent, so one
// left behind is harmless and the next claim reuses it.
func (m *IPAM) claimBlock(ctx context.Context, block netip.Prefix, node string) (err error) {
	akey, bkey := AffinityKey(node, block), BlockKey(block)
	pending, _ := json.Marshal(Affinity{State: AffinityPending, Node: node, Type: affinityHost, CIDR: block.String()})
	confirmed, _ := json.Marshal(Affinity{State: AffinityConfirmed, Node: node, Type: affinityHost, CIDR: block.String()})
	arev, err := m.store.Create(ctx, akey, pending)
	if errors.Is(err, ErrExists) {
		raw, rev, gerr := m.store.Get(ctx, akey)
		if errors.Is(gerr, ErrNotFound) {
			return errClaimedByOther // another request on this node undid its claim: start over
		}
		if gerr != nil {
			return fmt.Errorf("claim block %s: read affinity: %w", block, gerr)
		}
		var a Affinity
		if json.Unmarshal(raw, &a) == nil && a.State == AffinityConfirmed {
			if cur, _, _ := m.getBlock(ctx, block); cur != nil && cur.host() == node {
				return nil // another request on this node claimed it
			}
		}
		if arev, err = m.store.Update(ctx, akey, pending, rev); err != nil {
			if retryable(err) {
				return errClaimedByOther // raced: start over
			}
			return fmt.Errorf("claim block %s: mark affinity pending: %w", block, err)
		}
	} else if err != nil {
		return fmt.Errorf("claim block %s: create pending affinity: %w", block, err)
	}
	var brev int64 // revision of the block if this call created it
	defer func() {
		if err == nil {
			return
		}
		bg := context.WithoutCancel(ctx)
		if brev != 0 {
			if derr := m.store.Delete(bg, bkey, brev); derr != nil && !errors.Is(derr, ErrNotFound) {
				m.log.Warn("ipam: could not remove block of a failed claim", "key", bkey, "err", derr)
			}
		}
		if arev == 0 {
			return
		}
		if derr := m.store.Delete(bg, akey, arev); derr != nil && !errors.Is(derr, ErrNotFound) {
			m.log.Warn("ipam: could not remove pending affinity", "key", akey, "err", derr)
		}
	}()

	bval, err := json.Marshal(newBlock(block, node, m.cfg.Now()))
	if err != nil {
		return err
	}
	if brev, err = m.store.Create(ctx, bkey, bval); err != nil {
		brev = 0
		if !errors.Is(err, ErrExists) {
			return fmt.Errorf("claim block %s: create block: %w", block, err)
		}
		cur, _, gerr := m.getBlock(ctx, block)
		if gerr != nil {
			return fmt.Errorf("claim block %s: read existing block: %w", block, gerr)
		}
		if cur == nil || cur.host() != node {
			return errClaimedByOther
		}
		// Another request on this node created it: confirm below.
	}
	if _, err = m.store.Update(ctx, akey, confirmed, arev); err != nil {
		if retryable(err) {
			// Another request on this node took over the affinity (and
			// may be using the block): leave both to it and start over.
			brev, arev = 0, 0
			return errClaimedByOther
		}
		return fmt.Errorf("claim block %s: confirm affinity: %w", block, err)
	}
	m.log.Debug("ipam: claimed block", "block", block, "node", node)
	return nil
}

type keyedBlock struct {
	cidr  netip.Prefix
	block *Block
	rev   int64
}

// listBlocks returns every block, in key order; unreadable ones are skipped.
func (m *IPAM) listBlocks(ctx context.Context) ([]keyedBlock, error) {
	kvs, err := m.store.List(ctx, blockPrefix)
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	out := make([]keyedBlock, 0, len(kvs))
	for _, kv := range kvs {
		cidr, b, err := decodeBlock(kv.Key, kv.Value)
		if err != nil {
			m.log.Warn("ipam: skipping bad block", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, keyedBlock{cidr: cidr, block: b, rev: kv.Revision})
	}
	return out, nil
}

func decodeBlock(key string, raw []byte) (netip.Prefix, *Block, error) {
	cidr, err := parseBlockKey(key)
	if err != nil {
		return cidr, nil, err
	}
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return cidr, nil, fmt.Errorf("block %s: %w", cidr, err)
	}
	if b.SequenceNumberForAllocation == nil {
		b.SequenceNumberForAllocation = map[string]uint64{}
	}
	if err := b.validate(cidr); err != nil {
		return cidr, nil, err
	}
	return cidr, &b, nil
}

// getBlock reads one block; a missing block is (nil, 0, nil).
func (m *IPAM) getBlock(ctx context.Context, cidr netip.Prefix) (*Block, int64, error) {
	raw, rev, err := m.store.Get(ctx, BlockKey(cidr))
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read block %s: %w", cidr, err)
	}
	_, b, err := decodeBlock(BlockKey(cidr), raw)
	if err != nil {
		return nil, 0, err
	}
	return b, rev, nil
}

// writeBlock CAS-writes b (bumping its sequence number) or, if delete is
// set, CAS-deletes it.
func (m *IPAM) writeBlock(ctx context.Context, cidr netip.Prefix, b *Block, rev int64, del bool) error {
	if del {
		return m.store.Delete(ctx, BlockKey(cidr), rev)
	}
	b.SequenceNumber++
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = m.store.Update(ctx, BlockKey(cidr), raw, rev)
	return err
}

// backoff sleeps a little after the i-th conflict, so that many writers
// hammering one block spread out.
func backoff(ctx context.Context, i int) {
	if i < 3 {
		return
	}
	d := time.Duration(rand.Int64N(int64(min(i, 20)) * int64(200*time.Microsecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// assignFromBlock takes up to n addresses from block for handle: the handle
// count goes up first, then the block is written; if the block write fails
// the handle count is put back. affine, if set, requires the block to still
// be affine to that node. It returns the addresses taken (possibly none).
func (m *IPAM) assignFromBlock(ctx context.Context, snap *snapshot, cidr netip.Prefix, n int,
	handle string, attrs map[string]string, affine string) ([]netip.Addr, error) {
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur, rev, err := m.getBlock(ctx, cidr)
		if err != nil || cur == nil {
			return nil, err
		}
		if affine != "" && cur.host() != affine {
			return nil, nil
		}
		b := cur.clone()
		if b.expireCooldowns(snap.cooldown, m.cfg.Now()) {
			b.compact()
		}
		ords := b.take(cidr, n, handle, attrs, snap.rs)
		if len(ords) == 0 {
			return nil, nil
		}
		if err := m.incrementHandle(ctx, handle, cidr, len(ords)); err != nil {
			return nil, err
		}
		werr := m.writeBlock(ctx, cidr, b, rev, false)
		if werr == nil {
			out := make([]netip.Addr, len(ords))
			for k, o := range ords {
				out[k] = ordinalAddr(cidr, o)
			}
			return out, nil
		}
		if derr := m.decrementHandle(ctx, handle, cidr, len(ords)); derr != nil {
			return nil, fmt.Errorf("write block %s: %w; and undoing handle %q count failed: %w", cidr, werr, handle, derr)
		}
		if !retryable(werr) {
			return nil, fmt.Errorf("write block %s: %w", cidr, werr)
		}
		backoff(ctx, i)
	}
	return nil, fmt.Errorf("write block %s: gave up after %d conflicts", cidr, m.cfg.MaxRetries)
}

// incrementHandle adds n to handle's count for block, creating the handle.
func (m *IPAM) incrementHandle(ctx context.Context, id string, block netip.Prefix, n int) error {
	return m.updateHandle(ctx, id, func(h *Handle) { h.Block[block.String()] += n }, true)
}

// decrementHandle subtracts n from handle's count for block, deleting the
// entry at zero and the handle when it holds nothing.
func (m *IPAM) decrementHandle(ctx context.Context, id string, block netip.Prefix, n int) error {
	return m.updateHandle(ctx, id, func(h *Handle) {
		k := block.String()
		if h.Block[k] -= n; h.Block[k] <= 0 {
			delete(h.Block, k)
		}
	}, false)
}

// updateHandle applies change to the handle with CAS retries. A missing
// handle is created if create is set, else it is left alone.
func (m *IPAM) updateHandle(ctx context.Context, id string, change func(*Handle), create bool) error {
	key := HandleKey(id)
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, rev, err := m.store.Get(ctx, key)
		h := Handle{HandleID: id, Block: map[string]int{}}
		switch {
		case errors.Is(err, ErrNotFound):
			if !create {
				return nil
			}
			change(&h)
			val, _ := json.Marshal(h)
			_, err = m.store.Create(ctx, key, val)
		case err != nil:
			return fmt.Errorf("read handle %q: %w", id, err)
		default:
			if err := json.Unmarshal(raw, &h); err != nil {
				return fmt.Errorf("handle %q: %w", id, err)
			}
			if h.Block == nil {
				h.Block = map[string]int{}
			}
			h.HandleID = id
			change(&h)
			if len(h.Block) == 0 {
				err = m.store.Delete(ctx, key, rev)
			} else {
				val, _ := json.Marshal(h)
				_, err = m.store.Update(ctx, key, val, rev)
			}
		}
		if err == nil {
			return nil
		}
		if !retryable(err) && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("write handle %q: %w", id, err)
		}
		backoff(ctx, i)
	}
	return fmt.Errorf("write handle %q: gave up after %d conflicts", id, m.cfg.MaxRetries)
}

// AssignIPArgs is a request for one specific address.
type AssignIPArgs struct {
	IP       netip.Addr
	HandleID string
	Attrs    map[string]string
	// Node is the requesting host (empty means Config.Node). If the
	// address's block does not exist yet, it is claimed for this node.
	Node string
}

// AssignIP assigns exactly args.IP. It fails with ErrNotInPool if the
// address is in no pool, and with ErrAlreadyAllocated (naming the holder's
// handle) if it is taken. Reservations do not apply: they only keep
// addresses out of automatic assignment.
func (m *IPAM) AssignIP(ctx context.Context, args AssignIPArgs) error {
	if err := validHandle(args.HandleID); err != nil {
		return fmt.Errorf("ipam: assign %s: %w", args.IP, err)
	}
	if !args.IP.IsValid() {
		return errors.New("ipam: assign: IP is not set")
	}
	ip := args.IP.Unmap()
	node, err := m.node(args.Node)
	if err != nil {
		return fmt.Errorf("ipam: assign %s: %w", ip, err)
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("ipam: assign %s: %w", ip, err)
	}
	p := snap.poolFor(ip)
	if p == nil {
		return fmt.Errorf("ipam: assign %s: %w", ip, ErrNotInPool)
	}
	if p.disabled {
		return fmt.Errorf("ipam: assign %s: pool %s is disabled", ip, p)
	}
	cidr := p.blockFor(ip)
	attrs := withNode(args.Attrs, node)
	o := addrOrdinal(cidr, ip)
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		cur, rev, err := m.getBlock(ctx, cidr)
		if err != nil {
			return fmt.Errorf("ipam: assign %s: %w", ip, err)
		}
		if cur == nil {
			if err := m.claimBlock(ctx, cidr, node); err != nil && !errors.Is(err, errClaimedByOther) {
				return fmt.Errorf("ipam: assign %s: %w", ip, err)
			}
			continue
		}
		b := cur.clone()
		if b.expireCooldowns(snap.cooldown, m.cfg.Now()) {
			b.compact()
		}
		if a := b.Allocations[o]; a != nil {
			if b.Attributes[*a].ReleasedAt != nil {
				return fmt.Errorf("ipam: assign %s: %w (released at %s, in cooldown)", ip, ErrAlreadyAllocated,
					b.Attributes[*a].ReleasedAt.Format(time.RFC3339))
			}
			return fmt.Errorf("ipam: assign %s: %w (handle %q)", ip, ErrAlreadyAllocated, b.handleOf(o))
		}
		b.takeOrdinal(o, args.HandleID, attrs)
		if err := m.incrementHandle(ctx, args.HandleID, cidr, 1); err != nil {
			return fmt.Errorf("ipam: assign %s: %w", ip, err)
		}
		werr := m.writeBlock(ctx, cidr, b, rev, false)
		if werr == nil {
			return nil
		}
		if derr := m.decrementHandle(ctx, args.HandleID, cidr, 1); derr != nil {
			return fmt.Errorf("ipam: assign %s: write block: %w; and undoing handle count failed: %w", ip, werr, derr)
		}
		if !retryable(werr) {
			return fmt.Errorf("ipam: assign %s: write block %s: %w", ip, cidr, werr)
		}
		backoff(ctx, i)
	}
	return fmt.Errorf("ipam: assign %s: gave up after %d conflicts", ip, m.cfg.MaxRetries)
}
