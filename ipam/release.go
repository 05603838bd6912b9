package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// ReleaseOptions names one address to release.
type ReleaseOptions struct {
	Address netip.Addr
	// HandleID, if set, must be the holder's handle (else ErrWrongHandle).
	HandleID string
	// SequenceNumber, if set, must equal the allocation's sequence number
	// (the ABA guard; else ErrBadSequenceNumber).
	SequenceNumber *uint64
}

// ReleaseIPs releases addresses: per block, the block is written first, then
// the handles' counts go down. It returns the addresses that were not
// allocated (not an error). Guard failures (wrong handle, bad sequence
// number) release nothing in that block and are returned joined together.
func (m *IPAM) ReleaseIPs(ctx context.Context, opts ...ReleaseOptions) ([]netip.Addr, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: release: %w", err)
	}
	byBlock := map[netip.Prefix][]ReleaseOptions{}
	var unallocated []netip.Addr
	var blocks []keyedBlock // listed lazily, for addresses outside every pool
	for i, o := range opts {
		if !o.Address.IsValid() {
			return nil, fmt.Errorf("ipam: release: option %d has no address", i)
		}
		o.Address = o.Address.Unmap()
		var cidr netip.Prefix
		if p := snap.poolFor(o.Address); p != nil {
			cidr = p.blockFor(o.Address)
		} else {
			if blocks == nil {
				if blocks, err = m.listBlocks(ctx); err != nil {
					return nil, fmt.Errorf("ipam: release: %w", err)
				}
			}
			for _, kb := range blocks {
				if kb.cidr.Contains(o.Address) {
					cidr = kb.cidr
				}
			}
		}
		if !cidr.IsValid() {
			unallocated = append(unallocated, o.Address)
			continue
		}
		byBlock[cidr] = append(byBlock[cidr], o)
	}
	cidrs := make([]netip.Prefix, 0, len(byBlock))
	for c := range byBlock {
		cidrs = append(cidrs, c)
	}
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	var errs []error
	for _, c := range cidrs {
		un, err := m.releaseFromBlock(ctx, snap, c, byBlock[c])
		unallocated = append(unallocated, un...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return unallocated, fmt.Errorf("ipam: release: %w", errors.Join(errs...))
	}
	return unallocated, nil
}

// releaseFromBlock releases addresses of one block.
func (m *IPAM) releaseFromBlock(ctx context.Context, snap *snapshot, cidr netip.Prefix, opts []ReleaseOptions) ([]netip.Addr, error) {
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur, rev, err := m.getBlock(ctx, cidr)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			out := make([]netip.Addr, len(opts))
			for k, o := range opts {
				out[k] = o.Address
			}
			return out, nil
		}
		b := cur.clone()
		now := m.cfg.Now()
		b.expireCooldowns(snap.cooldown, now)
		var unallocated []netip.Addr
		var guard []error
		counts := map[string]int{}
		for _, o := range opts {
			ord := addrOrdinal(cidr, o.Address)
			if !b.inUse(ord) {
				unallocated = append(unallocated, o.Address)
				continue
			}
			h := b.handleOf(ord)
			if o.HandleID != "" && o.HandleID != h {
				guard = append(guard, fmt.Errorf("%s: %w (held by %q, not %q)", o.Address, ErrWrongHandle, h, o.HandleID))
				continue
			}
			if o.SequenceNumber != nil {
				if got := b.SequenceNumberForAllocation[strconv.Itoa(ord)]; got != *o.SequenceNumber {
					guard = append(guard, fmt.Errorf("%s: %w (allocation has %d, release carries %d)",
						o.Address, ErrBadSequenceNumber, got, *o.SequenceNumber))
					continue
				}
			}
			counts[h]++
			b.free(ord, snap.cooldown, now)
		}
		if len(guard) > 0 {
			return unallocated, errors.Join(guard...)
		}
		if len(counts) == 0 {
			return unallocated, nil
		}
		if err := m.commitRelease(ctx, cidr, b, rev, counts); err != nil {
			if retryable(err) {
				backoff(ctx, i)
				continue
			}
			return nil, err
		}
		return unallocated, nil
	}
	return nil, fmt.Errorf("write block %s: gave up after %d conflicts", cidr, m.cfg.MaxRetries)
}

// commitRelease writes a block after a release (deleting it if it is empty
// and affine to no one) and then decrements the handles. Block write errors
// are returned as they are (so conflicts can be retried).
func (m *IPAM) commitRelease(ctx context.Context, cidr netip.Prefix, b *Block, rev int64, counts map[string]int) error {
	b.compact()
	if err := m.writeBlock(ctx, cidr, b, rev, b.empty() && b.Affinity == nil); err != nil {
		if retryable(err) {
			return err
		}
		return fmt.Errorf("write block %s: %w", cidr, err)
	}
	var errs []error
	for _, h := range sortedKeys(counts) {
		if h == "" {
			continue
		}
		if err := m.decrementHandle(ctx, h, cidr, counts[h]); err != nil {
			errs = append(errs, fmt.Errorf("block %s released but handle %q not updated (run ReleaseByHandle to repair): %w", cidr, h, err))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// ReleaseByHandle releases every address held by handleID and deletes the
// handle. For each block the handle names, the block's allocations with that
// handle are released first, then the handle's entry for the block is
// removed, so running it again after a partial failure finishes the job.
// It returns ErrHandleNotFound if the handle does not exist.
func (m *IPAM) ReleaseByHandle(ctx context.Context, handleID string) ([]netip.Addr, error) {
	if err := validHandle(handleID); err != nil {
		return nil, fmt.Errorf("ipam: release by handle: %w", err)
	}
	raw, _, err := m.store.Get(ctx, HandleKey(handleID))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("ipam: release by handle %q: %w", handleID, ErrHandleNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: release by handle %q: %w", handleID, err)
	}
	var h Handle
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("ipam: release by handle %q: %w", handleID, err)
	}
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipam: release by handle %q: %w", handleID, err)
	}
	var out []netip.Addr
	for _, bs := range sortedKeys(h.Block) {
		cidr, err := netip.ParsePrefix(bs)
		if err != nil {
			return out, fmt.Errorf("ipam: release by handle %q: block %q: %w", handleID, bs, err)
		}
		got, err := m.releaseHandleFromBlock(ctx, snap, cidr, handleID)
		out = append(out, got...)
		if err != nil {
			return out, fmt.Errorf("ipam: release by handle %q: %w", handleID, err)
		}
	}
	return out, nil
}

func (m *IPAM) releaseHandleFromBlock(ctx context.Context, snap *snapshot, cidr netip.Prefix, handleID string) ([]netip.Addr, error) {
	for i := 0; i < m.cfg.MaxRetries; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur, rev, err := m.getBlock(ctx, cidr)
		if err != nil {
			return nil, err
		}
		var out []netip.Addr
		if cur != nil {
			b := cur.clone()
			now := m.cfg.Now()
			b.expireCooldowns(snap.cooldown, now)
			for o := range b.Allocations {
				if b.inUse(o) && b.handleOf(o) == handleID {
					out = append(out, ordinalAddr(cidr, o))
					b.free(o, snap.cooldown, now)
				}
			}
			if len(out) > 0 {
				b.compact()
				if err := m.writeBlock(ctx, cidr, b, rev, b.empty() && b.Affinity == nil); err != nil {
					if retryable(err) {
						backoff(ctx, i)
						continue
					}
					return nil, fmt.Errorf("write block %s: %w", cidr, err)
				}
			}
		}
		// The block holds nothing for the handle now: drop its entry.
		if err := m.updateHandle(ctx, handleID, func(h *Handle) { delete(h.Block, cidr.String()) }, false); err != nil {
			return out, fmt.Errorf("block %s released but handle not updated: %w", cidr, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("write block %s: gave up after %d conflicts", cidr, m.cfg.MaxRetries)
}
