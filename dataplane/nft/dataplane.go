package nft

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/brindle-net/brindle/desired"
)

// Dataplane programs one host's (or network namespace's) policy dataplane
// into our nftables table. Its methods are safe for concurrent use; calls
// are serialised.
type Dataplane struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards everything below
	k  *kernel
	b  *builder
	// want is the model of the last state passed to Apply; nil before
	// the first Apply.
	want *model
	// have is what we believe the kernel holds; nil means unknown (before
	// the first Apply, or after a failed transaction): read it back.
	have         *model
	writes       uint64
	transactions uint64
}

// New returns a Dataplane. It touches nothing in the kernel: the first
// Apply does.
func New(cfg Config, log *slog.Logger) (*Dataplane, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nft config: %w", err)
	}
	k, err := newKernel(cfg)
	if err != nil {
		return nil, err
	}
	return &Dataplane{cfg: cfg, log: log, k: k, b: newBuilder(cfg)}, nil
}

// Close releases the netlink connection. It leaves the table in place.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.k.close()
}

// Apply makes the kernel hold exactly the ruleset for s, in one atomic
// transaction that touches only what differs from what the kernel holds.
// Applying an unchanged state sends nothing. The first Apply reads the
// kernel back and also removes whatever is in our table and not desired.
// An invalid state is rejected before anything is sent. The caller must
// not modify s's contents while Apply runs (Apply keeps its own copies).
func (d *Dataplane) Apply(s *desired.State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := d.b.build(s)
	return d.sync(want, d.have == nil)
}

// Resync reads our table back from the kernel and repairs any drift from
// the last applied state (a deleted table, chain, rule, set or element; a
// foreign rule or set added to our table). Before the first Apply it does
// nothing.
func (d *Dataplane) Resync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want == nil {
		return nil
	}
	return d.sync(d.want, true)
}

// Writes returns the number of nftables operations (netlink messages)
// sent so far: an Apply or Resync that finds nothing to change adds zero.
func (d *Dataplane) Writes() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// Transactions returns the number of transactions committed so far.
func (d *Dataplane) Transactions() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.transactions
}

// Dump renders the last applied state as text (see Render); empty before
// the first Apply.
func (d *Dataplane) Dump() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want == nil {
		return ""
	}
	return d.want.render(d.cfg.TableName)
}

func (d *Dataplane) sync(want *model, readBack bool) error {
	have := d.have
	if readBack {
		var err error
		if have, err = d.k.read(); err != nil {
			d.have = nil
			return fmt.Errorf("read nftables table %s: %w", d.cfg.TableName, err)
		}
	}
	d.want = want
	b := d.k.plan(want, have)
	if b.ops == 0 {
		d.have = want
		return nil
	}
	if err := b.flush(); err != nil {
		// The kernel rejected the whole transaction (or we never sent
		// it): what it holds is unknown until read back. Start over on a
		// fresh connection so no queued message leaks into the next
		// batch.
		d.have = nil
		if k, kerr := newKernel(d.cfg); kerr == nil {
			_ = d.k.close()
			d.k = k
		}
		return err
	}
	d.writes += uint64(b.ops)
	d.transactions++
	d.have = want
	if d.log != nil {
		d.log.Debug("nftables transaction", "operations", b.ops, "readBack", readBack)
	}
	return nil
}
