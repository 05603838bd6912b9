package nat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
)

// Names of what we own.
const (
	// DefaultTable is our table (family ip). The policy dataplane's
	// `table inet brindle` is another table and never touched here.
	DefaultTable = "brindle-nat"
	// ChainName is the base chain: type nat, hook postrouting, priority
	// srcnat (100).
	ChainName = "postrouting"
	// SetMasquerade holds the natOutgoing pools (Calico's masq-ipam-pools).
	SetMasquerade = "masq-pools"
	// SetPools holds every pool (Calico's all-ipam-pools).
	SetPools = "all-pools"
)

// ruleComment marks our one rule; a table whose rule lacks it is rebuilt.
const ruleComment = "brindle nat-outgoing v1"

// Config configures a Table.
type Config struct {
	// Table is the nftables table name (family ip). Default DefaultTable.
	Table string
	// Netns is the path of the network namespace to program; "" means
	// the caller's own.
	Netns string
	// Logger receives debug lines; nil discards them.
	Logger *slog.Logger
}

// Stats counts kernel writes: a repeat Apply of the same Desired adds none.
type Stats struct {
	Applies    uint64
	Resyncs    uint64
	Rebuilds   uint64 // whole-table transactions (created, repaired)
	SetUpdates uint64 // set flush-and-fill transactions
	Deletes    uint64 // table removed (no natOutgoing pool)
}

// Writes is the number of transactions sent.
func (s Stats) Writes() uint64 { return s.Rebuilds + s.SetUpdates + s.Deletes }

// Table programs the NAT-outgoing table. Its methods are safe for
// concurrent use.
type Table struct {
	cfg   Config
	log   *slog.Logger
	nsfd  netns.NsHandle
	table *nftables.Table

	mu      sync.Mutex // guards the fields below and serialises transactions
	desired *Desired   // nil until the first Apply
	stats   Stats
}

// New returns a Table for cfg. It touches nothing until the first Apply.
func New(cfg Config) (*Table, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Netns != "" && !filepath.IsAbs(cfg.Netns) {
		return nil, fmt.Errorf("nat config: Netns %q is not an absolute path", cfg.Netns)
	}
	t := &Table{cfg: cfg, log: cfg.Logger, nsfd: -1,
		table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4}}
	if cfg.Netns != "" {
		fd, err := netns.GetFromPath(cfg.Netns)
		if err != nil {
			return nil, fmt.Errorf("nat: open netns %s: %w", cfg.Netns, err)
		}
		t.nsfd = fd
	}
	return t, nil
}

// Close releases the namespace handle. The table stays in the kernel.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nsfd >= 0 {
		err := t.nsfd.Close()
		t.nsfd = -1
		return err
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// Apply makes the kernel's table match des: absent when des masquerades
// nothing; otherwise the chain, its rule and both sets. It reads the table
// back and sends one transaction only when something differs: a set whose
// elements differ is flushed and refilled atomically; a table whose
// structure differs is replaced atomically.
func (t *Table) Apply(des Desired) error {
	if err := des.validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Applies++
	t.desired = &des
	return t.reconcile()
}

// Resync repairs drift against the last Apply; before it, it does nothing.
func (t *Table) Resync() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.desired == nil {
		return nil
	}
	t.stats.Resyncs++
	return t.reconcile()
}

func (t *Table) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if t.nsfd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(int(t.nsfd)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nat: nftables connection: %w", err)
	}
	return c, nil
}

// kernelState is what read found.
type kernelState struct {
	exists    bool
	structure bool                      // chain, rule and both sets as we make them
	sets      map[string]*nftables.Set  // by name
	elems     map[string][]elementValue // by set name, canonical
}

type elementValue struct {
	key uint32
	end bool
}

func (t *Table) reconcile() error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	st, err := t.read(c)
	if err != nil {
		return err
	}
	des := t.desired
	if len(des.Masquerade) == 0 {
		if !st.exists {
			return nil
		}
		c.DelTable(t.table)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nat: delete table %s: %w", t.table.Name, err)
		}
		t.stats.Deletes++
		return nil
	}
	want := map[string][]elementValue{SetMasquerade: elements(des.Masquerade), SetPools: elements(des.Pools)}
	if !st.structure {
		if err := t.rebuild(c, st.exists, want); err != nil {
			return err
		}
		t.stats.Rebuilds++
		return nil
	}
	changed := false
	for _, name := range []string{SetMasquerade, SetPools} {
		if slices.Equal(st.elems[name], want[name]) {
			continue
		}
		s := st.sets[name]
		c.FlushSet(s)
		if len(want[name]) > 0 {
			if err := c.SetAddElements(s, toSetElements(want[name])); err != nil {
				return fmt.Errorf("nat: set %s elements: %w", name, err)
			}
		}
		changed = true
	}
	if !changed {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: update sets: %w", err)
	}
	t.stats.SetUpdates++
	return nil
}

// read returns the table as the kernel has it.
func (t *Table) read(c *nftables.Conn) (*kernelState, error) {
	st := &kernelState{sets: map[string]*nftables.Set{}, elems: map[string][]elementValue{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nat: list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.table.Name }) {
		return st, nil
	}
	st.exists = true
	sets, err := c.GetSets(t.table)
	if err != nil {
		return nil, fmt.Errorf("nat: list sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		s.Table = t.table
		st.sets[s.Name] = s
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nat: list elements of %s: %w", s.Name, err)
		}
		st.elems[s.Name] = canonical(els)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nat: list chains: %w", err)
	}
	var ours []*nftables.Chain
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == t.table.Name {
			ours = append(ours, ch)
		}
	}
	st.structure = len(sets) == 2 && len(st.sets) == 2 && len(ours) == 1
	for _, name := range []string{SetMasquerade, SetPools} {
		if s := st.sets[name]; s == nil || !s.Interval || s.KeyType != nftables.TypeIPAddr {
			st.structure = false
		}
	}
	if st.structure {
		ch := ours[0]
		if ch.Name != ChainName || ch.Type != nftables.ChainTypeNAT || ch.Hooknum == nil ||
			*ch.Hooknum != *nftables.ChainHookPostrouting || ch.Priority == nil || *ch.Priority != *nftables.ChainPriorityNATSource {
			st.structure = false
		}
	}
	if st.structure {
		rules, err := c.GetRules(t.table, ours[0])
		if err != nil {
			return nil, fmt.Errorf("nat: list rules: %w", err)
		}
		st.structure = len(rules) == 1 && bytes.Equal(rules[0].UserData, ruleUserData())
	}
	return st, nil
}

func ruleUserData() []byte { return userdata.AppendString(nil, userdata.TypeComment, ruleComment) }

// rebuild replaces the whole table in one transaction.
func (t *Table) rebuild(c *nftables.Conn, exists bool, want map[string][]elementValue) error {
	if exists {
		c.DelTable(t.table)
	}
	c.AddTable(t.table)
	sets := map[string]*nftables.Set{}
	for i, name := range []string{SetMasquerade, SetPools} {
		// An explicit transaction-local ID: with ID 0 the library
		// allocates from a package-level counter without a lock.
		s := &nftables.Set{Table: t.table, Name: name, ID: uint32(i + 1), KeyType: nftables.TypeIPAddr, Interval: true}
		if err := c.AddSet(s, toSetElements(want[name])); err != nil {
			return fmt.Errorf("nat: add set %s: %w", name, err)
		}
		sets[name] = s
	}
	ch := c.AddChain(&nftables.Chain{Name: ChainName, Table: t.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	masq, pools := sets[SetMasquerade], sets[SetPools]
	c.AddRule(&nftables.Rule{Table: t.table, Chain: ch, UserData: ruleUserData(), Exprs: []expr.Any{
		// ip saddr @masq-pools
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: masq.Name, SetID: masq.ID},
		// ip daddr != @all-pools
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: pools.Name, SetID: pools.ID, Invert: true},
		&expr.Counter{},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: write table %s: %w", t.table.Name, err)
	}
	return nil
}

// Counter returns the packets and bytes the masquerade rule has matched
// (new connections: NAT rules see a flow's first packet only).
func (t *Table) Counter() (packets, bytes uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn()
	if err != nil {
		return 0, 0, err
	}
	rules, err := c.GetRules(t.table, &nftables.Chain{Name: ChainName, Table: t.table})
	if err != nil {
		return 0, 0, fmt.Errorf("nat: list rules: %w", err)
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				return ctr.Packets, ctr.Bytes, nil
			}
		}
	}
	return 0, 0, errors.New("nat: no counter in our chain")
}

// elements renders prefixes as interval-set elements: a start element per
// range and an interval-end element at the first address after it (none
// for a range that reaches the top of the address space).
func elements(ps []netip.Prefix) []elementValue {
	var out []elementValue
	for _, iv := range intervals(ps) {
		out = append(out, elementValue{key: iv.start})
		if iv.end != 0 {
			out = append(out, elementValue{key: iv.end, end: true})
		}
	}
	slices.SortFunc(out, compareElem)
	return out
}

func compareElem(a, b elementValue) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	case a.end == b.end:
		return 0
	case a.end:
		return -1
	}
	return 1
}

func canonical(els []nftables.SetElement) []elementValue {
	var out []elementValue
	for _, e := range els {
		if len(e.Key) != 4 {
			continue
		}
		out = append(out, elementValue{key: binary.BigEndian.Uint32(e.Key), end: e.IntervalEnd})
	}
	slices.SortFunc(out, compareElem)
	return out
}

func toSetElements(vs []elementValue) []nftables.SetElement {
	out := make([]nftables.SetElement, len(vs))
	for i, v := range vs {
		k := make([]byte, 4)
		binary.BigEndian.PutUint32(k, v.key)
		out[i] = nftables.SetElement{Key: k, IntervalEnd: v.end}
	}
	return out
}
