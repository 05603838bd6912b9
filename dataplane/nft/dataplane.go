package nft

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	// synced is true when the kernel is known to hold want (after a
	// committed transaction); false before the first Apply and after a
	// failure, when the next Apply reads the kernel back.
	synced       bool
	writes       uint64
	transactions uint64
	// lastOps counts the last committed transaction's operations per
	// table (tabB, tabA).
	lastOps [2]int
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
// An invalid state is rejected before anything is sent. Nothing reachable
// from s's maps may be modified afterwards (a desired.Map itself never
// is): a map that is the Same as the last Apply's is taken as unchanged
// without a look.
func (d *Dataplane) Apply(s *desired.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Validation is incremental: objects unchanged since the last Apply
	// were valid then.
	if err := d.b.validate(s); err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	want, err := d.b.build(s)
	if err != nil {
		// The builder is half updated: start over from the kernel on the
		// next Apply. The kernel still holds the last state applied.
		d.b = newBuilder(d.cfg)
		d.want = nil
		d.synced = false
		return fmt.Errorf("desired state: %w", err)
	}
	d.want = want
	return d.send()
}

// send programs what the builder's last build or promote changed: the
// recorded delta, or the whole difference when the kernel's state is not
// known (before the first transaction, after a failed one).
func (d *Dataplane) send() error {
	if !d.synced {
		return d.sync()
	}
	return d.commit(d.k.planDelta(d.want, d.b.dSets, d.b.dChains, d.b.dElems))
}

// Settle gives classes that run through a generic chain chains of their
// own, at most Config.SettleBatch of them, in one transaction (the kernel
// validates the policy table for it); once none is left it drops the
// policies kept only for the generic chains for Config.RetainPoliciesFor
// or longer. The agent calls it once it has been idle for a moment, and
// again while Unsettled: a generic class costs every new connection of
// its endpoints a lookup per policy of the host. It reports whether it
// had anything to do.
func (d *Dataplane) Settle() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want == nil || !d.b.promote() {
		return false, nil
	}
	return true, d.send()
}

// Unsettled reports whether Settle has something to do: generic classes,
// policies kept only for the generic chains, or (after the first Apply)
// generic chains to lay out.
func (d *Dataplane) Unsettled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.unsettled()
}

// RetainedUntil returns when Settle will first have a retained policy to
// release (Config.RetainPoliciesFor after it left the state); zero when
// none is retained. The agent settles then if nothing else made it.
func (d *Dataplane) RetainedUntil() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.retainedUntil()
}

// GenericClasses returns how many classes run through a generic chain
// (until the next Settle).
func (d *Dataplane) GenericClasses() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.genericClasses()
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
	return d.sync()
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

// sync reads the kernel back and plans the full difference to d.want.
func (d *Dataplane) sync() error {
	have, present, err := d.k.read()
	if err != nil {
		d.synced = false
		return fmt.Errorf("read nftables tables %s and %s: %w", d.cfg.TableName, d.cfg.TableName+classifySuffix, err)
	}
	return d.commit(d.k.planFull(d.want, have, present))
}

// commit sends a planned transaction. On failure the kernel is unchanged
// but our idea of it is not: the next Apply reads it back.
func (d *Dataplane) commit(b *batch) error {
	if b.ops == 0 {
		d.synced = true
		return nil
	}
	if err := b.flush(); err != nil {
		// Start over on fresh connections so no queued message leaks into
		// the next batch.
		d.synced = false
		if k, kerr := newKernel(d.cfg); kerr == nil {
			_ = d.k.close()
			d.k = k
		}
		return err
	}
	d.writes += uint64(b.ops)
	d.lastOps = b.tableOps
	d.transactions++
	d.synced = true
	if d.log != nil {
		d.log.Debug("nftables transaction", "operations", b.ops,
			"policy table operations", b.tableOps[tabB], "classify table operations", b.tableOps[tabA])
	}
	return nil
}
