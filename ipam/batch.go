package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// AssignResult is the outcome of one request of AutoAssignMany.
type AssignResult struct {
	// Prefixes are the addresses assigned, as AutoAssign returns them.
	Prefixes []netip.Prefix
	// Err is why the request failed; then Prefixes is empty and nothing
	// is held for the request's handle.
	Err error
}

// AutoAssignMany is AutoAssign for several requests at once, each with its
// own handle. Requests that can be served from the same block are served
// together: every handle's count goes up (in parallel), then the block is
// written once with all their addresses, so N assignments on one host
// cost one compare-and-swap of the block instead of N that conflict with
// each other. Claiming a new block is shared too. What the shared path
// cannot serve (borrowing, exhaustion) is finished request by request as
// AutoAssign does, with the same errors.
//
// Each request is all or nothing, as with AutoAssign; one request's
// failure does not fail the others (a datastore error while writing a
// shared block fails the requests that were in that write). Handles must
// be distinct: a request repeating an earlier request's handle fails.
// Results are in the order of args.
func (m *IPAM) AutoAssignMany(ctx context.Context, args []AutoAssignArgs) []AssignResult {
	out := make([]AssignResult, len(args))
	reqs := make([]*manyReq, 0, len(args))
	seen := make(map[string]bool, len(args))
	for i, a := range args {
		r := &manyReq{idx: i, args: a}
		if err := m.validAutoAssign(a); err != nil {
			out[i].Err = err
			continue
		}
		if seen[a.HandleID] {
			out[i].Err = fmt.Errorf("ipam: auto-assign: handle %q is requested twice in one batch", a.HandleID)
			continue
		}
		seen[a.HandleID] = true
		r.node, _ = m.node(a.Node)
		r.attrs = withNode(a.Attrs, r.node)
		reqs = append(reqs, r)
	}
	if len(reqs) == 0 {
		return out
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		for _, r := range reqs {
			out[r.idx].Err = fmt.Errorf("ipam: auto-assign: %w", err)
		}
		return out
	}
	for _, v4 := range []bool{true, false} {
		groups := map[string][]*manyReq{}
		var keys []string
		for _, r := range reqs {
			if r.err != nil || r.want(v4) == 0 {
				continue
			}
			k := r.groupKey()
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], r)
		}
		for _, k := range keys {
			m.autoAssignFamilyMany(ctx, snap, groups[k], v4)
		}
	}
	for _, r := range reqs {
		if r.err != nil {
			if len(r.got) > 0 {
				m.rollback(ctx, r.args.HandleID, r.got)
			}
			out[r.idx].Err = fmt.Errorf("ipam: auto-assign: %w", r.err)
			continue
		}
		out[r.idx].Prefixes = r.got
	}
	return out
}

// validAutoAssign checks what AutoAssign checks before touching the store.
func (m *IPAM) validAutoAssign(a AutoAssignArgs) error {
	if err := validHandle(a.HandleID); err != nil {
		return fmt.Errorf("ipam: auto-assign: %w", err)
	}
	if a.Num4 < 0 || a.Num6 < 0 {
		return fmt.Errorf("ipam: auto-assign: negative count (Num4 %d, Num6 %d)", a.Num4, a.Num6)
	}
	if a.MaxBlocksPerHost < 0 {
		return fmt.Errorf("ipam: auto-assign: MaxBlocksPerHost %d is negative", a.MaxBlocksPerHost)
	}
	if _, err := m.node(a.Node); err != nil {
		return fmt.Errorf("ipam: auto-assign: %w", err)
	}
	return nil
}

// manyReq is one request of AutoAssignMany while it is served.
type manyReq struct {
	idx   int
	args  AutoAssignArgs
	node  string
	attrs map[string]string
	got   []netip.Prefix // both families
	fam   int            // addresses of the family being served
	err   error
}

func (r *manyReq) want(v4 bool) int {
	if v4 {
		return r.args.Num4
	}
	return r.args.Num6
}

// groupKey: requests with equal keys choose from the same pools and
// blocks.
func (r *manyReq) groupKey() string {
	return fmt.Sprintf("%s|%s|%s|%d", r.node, strings.Join(r.args.Pools, ","), r.args.IntendedUse, r.args.MaxBlocksPerHost)
}

// autoAssignFamilyMany serves one family for a group of requests with the
// same node, pools, use and block cap: the node's blocks first, shared;
// then new blocks, claimed once for the group; whatever is left goes
// through autoAssignFamily request by request (borrowing, exhaustion).
func (m *IPAM) autoAssignFamilyMany(ctx context.Context, snap *snapshot, group []*manyReq, v4 bool) {
	first := group[0]
	for _, r := range group {
		r.fam = 0
	}
	fail := func(err error) {
		for _, r := range group {
			if r.err == nil {
				r.err = err
			}
		}
	}
	pools, err := m.usablePools(ctx, snap, first.args, first.node, v4)
	if err != nil {
		fail(err)
		return
	}
	pending := func() []*manyReq {
		var p []*manyReq
		for _, r := range group {
			if r.err == nil && r.fam < r.want(v4) {
				p = append(p, r)
			}
		}
		return p
	}
	maxBlocks := first.args.MaxBlocksPerHost
	if maxBlocks == 0 {
		maxBlocks = snap.maxBlocks
	}
	if maxBlocks == 0 {
		maxBlocks = DefaultMaxBlocksPerHost
	}
	full := map[netip.Prefix]bool{}
	for attempt := 0; attempt <= m.cfg.MaxRetries; attempt++ {
		owned, err := m.affineBlocks(ctx, first.node, v4)
		if err != nil {
			fail(err)
			return
		}
		for _, b := range owned {
			p := pending()
			if len(p) == 0 {
				return
			}
			if full[b] || inPools(pools, b) == nil {
				continue
			}
			if err := m.assignFromBlockMany(ctx, snap, b, p, v4, first.node); err != nil {
				for _, r := range p {
					if r.err == nil {
						r.err = err
					}
				}
				return
			}
			if len(pending()) > 0 {
				full[b] = true
			}
		}
		if len(pending()) == 0 {
			return
		}
		if !snap.autoAlloc || len(owned) >= maxBlocks {
			break
		}
		block, err := m.findUsableBlock(ctx, snap, pools, first.node)
		if err != nil {
			fail(err)
			return
		}
		if !block.IsValid() {
			break
		}
		if err := m.claimBlock(ctx, block, first.node); err != nil && !errors.Is(err, errClaimedByOther) {
			fail(err)
			return
		}
	}
	// The rest, one by one, as AutoAssign would; a request that fails
	// gives back what it holds at once, so the requests after it can use
	// it (as if the requests had come one after another).
	for _, r := range pending() {
		got, err := m.autoAssignFamily(ctx, snap, r.args, r.node, r.attrs, v4, r.want(v4)-r.fam)
		r.got = append(r.got, got...)
		r.fam += len(got)
		if err != nil {
			r.err = err
			if len(r.got) > 0 {
				m.rollback(ctx, r.args.HandleID, r.got)
				r.got = nil
			}
		}
	}
}

// assignFromBlockMany takes addresses from one block for several requests
// in one compare-and-swap: handle counts up (in parallel), block written,
// and on a failed block write the counts go back down and, on a conflict,
// it tries again. affine, if set, requires the block to still be affine to
// that node. Requests the block has no room for are left pending.
func (m *IPAM) assignFromBlockMany(ctx context.Context, snap *snapshot, cidr netip.Prefix, reqs []*manyReq, v4 bool, affine string) error {
	type taken struct {
		r    *manyReq
		ords []int
	}
	useTxn := true
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		cur, rev, err := m.getBlock(ctx, cidr)
		if err != nil || cur == nil {
			return err
		}
		if affine != "" && cur.host() != affine {
			return nil
		}
		b := cur.clone()
		if b.expireCooldowns(snap.cooldown, m.cfg.Now()) {
			b.compact()
		}
		var takes []taken
		for _, r := range reqs {
			ords := b.take(cidr, r.want(v4)-r.fam, r.args.HandleID, r.attrs, snap.rs)
			if len(ords) == 0 {
				break
			}
			takes = append(takes, taken{r, ords})
		}
		if len(takes) == 0 {
			return nil
		}
		done := func() {
			for _, t := range takes {
				for _, o := range t.ords {
					t.r.got = append(t.r.got, netip.PrefixFrom(ordinalAddr(cidr, o), cidr.Bits()))
				}
				t.r.fam += len(t.ords)
			}
		}
		// One transaction: the block at the revision read, and every
		// handle new. If a handle already exists, do it step by step.
		if ts, ok := m.store.(TxnStore); ok && useTxn && len(takes) < maxTxnHandles {
			conds := []TxnCond{{Key: BlockKey(cidr), Revision: rev}}
			b.SequenceNumber++
			raw, err := json.Marshal(b)
			if err != nil {
				return err
			}
			puts := []TxnPut{{Key: BlockKey(cidr), Value: raw}}
			for _, t := range takes {
				h, _ := json.Marshal(Handle{HandleID: t.r.args.HandleID, Block: map[string]int{cidr.String(): len(t.ords)}})
				conds = append(conds, TxnCond{Key: HandleKey(t.r.args.HandleID)})
				puts = append(puts, TxnPut{Key: HandleKey(t.r.args.HandleID), Value: h})
			}
			ok, err := ts.Txn(ctx, conds, puts)
			if err != nil {
				return fmt.Errorf("write block %s with %d handles: %w", cidr, len(takes), err)
			}
			if ok {
				done()
				return nil
			}
			// Which condition failed: the block (retry) or a handle?
			if _, now, err := m.store.Get(ctx, BlockKey(cidr)); err == nil && now == rev {
				useTxn = false
			}
			backoff(ctx, i)
			continue
		}
		// Handle counts up, all at once; on any failure, back down.
		upErrs := parallel(len(takes), func(k int) error {
			return m.incrementHandle(ctx, takes[k].r.args.HandleID, cidr, len(takes[k].ords))
		})
		undo := func() error {
			var ups []int
			for k, e := range upErrs {
				if e == nil {
					ups = append(ups, k)
				}
			}
			errs := parallel(len(ups), func(j int) error {
				t := takes[ups[j]]
				return m.decrementHandle(context.WithoutCancel(ctx), t.r.args.HandleID, cidr, len(t.ords))
			})
			return errors.Join(errs...)
		}
		if err := errors.Join(upErrs...); err != nil {
			if derr := undo(); derr != nil {
				return fmt.Errorf("%w; and undoing handle counts failed: %w", err, derr)
			}
			return err
		}
		werr := m.writeBlock(ctx, cidr, b, rev, false)
		if werr == nil {
			done()
			return nil
		}
		if derr := undo(); derr != nil {
			return fmt.Errorf("write block %s: %w; and undoing handle counts failed: %w", cidr, werr, derr)
		}
		if !retryable(werr) {
			return fmt.Errorf("write block %s: %w", cidr, werr)
		}
		backoff(ctx, i)
	}
	return fmt.Errorf("write block %s: gave up after %d conflicts", cidr, m.cfg.MaxRetries)
}

// maxTxnHandles bounds the handles written in one transaction with their
// block (etcd allows 128 operations per transaction by default).
const maxTxnHandles = 100

// maxParallelWrites bounds the store writes parallel issues at once.
const maxParallelWrites = 32

// parallel runs f(0..n-1) with bounded concurrency and returns each error.
func parallel(n int, f func(k int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = f(0)
		return errs
	}
	sem := make(chan struct{}, maxParallelWrites)
	var wg sync.WaitGroup
	for k := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[k] = f(k)
		}()
	}
	wg.Wait()
	return errs
}
