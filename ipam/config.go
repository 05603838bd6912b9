package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/selector"
)

// DefaultMaxRetries is how many times a conflicting write is retried.
const DefaultMaxRetries = 100

// DefaultMaxBlocksPerHost is the block cap when neither the request nor the
// IPAMConfiguration sets one.
const DefaultMaxBlocksPerHost = 20

// Config configures an IPAM.
type Config struct {
	// Node is the default node for requests that do not name one.
	Node string
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
	// MaxRetries bounds the re-read-and-retry loop of every write on a
	// revision conflict; 0 means DefaultMaxRetries.
	MaxRetries int
	// Source supplies pools, reservations, IPAM configuration and node
	// labels. Required.
	Source Source
	// Now is the clock (cooldowns, claim times); nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Source == nil {
		return errors.New("ipam config: Source is required")
	}
	if c.MaxRetries < 0 {
		return fmt.Errorf("ipam config: MaxRetries %d is negative", c.MaxRetries)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.Node != "" {
		if err := validNode(c.Node); err != nil {
			return fmt.Errorf("ipam config: Node: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func validNode(n string) error {
	if n == "" {
		return errors.New("node name is empty")
	}
	if strings.ContainsAny(n, "/ \t\n") {
		return fmt.Errorf("node name %q contains '/' or whitespace", n)
	}
	return nil
}

func validHandle(h string) error {
	if h == "" {
		return errors.New("handle ID is empty")
	}
	if strings.ContainsAny(h, "/ \t\n") {
		return fmt.Errorf("handle ID %q contains '/' or whitespace", h)
	}
	return nil
}

// Source supplies the cluster objects IPAM decisions depend on. The agent
// backs it with the datastore; tests use StaticSource.
type Source interface {
	IPPools(ctx context.Context) ([]*api.IPPool, error)
	IPReservations(ctx context.Context) ([]*api.IPReservation, error)
	// IPAMConfig returns the cluster IPAM settings; nil means defaults.
	IPAMConfig(ctx context.Context) (*api.IPAMConfigurationSpec, error)
	// NodeLabels returns a node's labels (nil if the node is unknown).
	NodeLabels(ctx context.Context, node string) (map[string]string, error)
}

// StaticSource is a Source over fixed values.
type StaticSource struct {
	Pools        []*api.IPPool
	Reservations []*api.IPReservation
	Config       *api.IPAMConfigurationSpec
	Labels       map[string]map[string]string
}

// IPPools implements Source.
func (s *StaticSource) IPPools(context.Context) ([]*api.IPPool, error) { return s.Pools, nil }

// IPReservations implements Source.
func (s *StaticSource) IPReservations(context.Context) ([]*api.IPReservation, error) {
	return s.Reservations, nil
}

// IPAMConfig implements Source.
func (s *StaticSource) IPAMConfig(context.Context) (*api.IPAMConfigurationSpec, error) {
	return s.Config, nil
}

// NodeLabels implements Source.
func (s *StaticSource) NodeLabels(_ context.Context, node string) (map[string]string, error) {
	return s.Labels[node], nil
}

// pool is a validated, defaulted IPPool.
type pool struct {
	name      string
	cidr      netip.Prefix
	blockBits int
	disabled  bool
	nodeSel   *selector.Selector
	uses      []string
}

func (p *pool) String() string { return p.name + " (" + p.cidr.String() + ")" }

// blockFor returns the block of p that holds addr.
func (p *pool) blockFor(addr netip.Addr) netip.Prefix {
	b, _ := addr.Prefix(p.blockBits)
	return b
}

// numBlocks is the number of blocks in p, saturated at 1<<62.
func (p *pool) numBlocks() uint64 {
	d := p.blockBits - p.cidr.Bits()
	if d >= 62 {
		return 1 << 62
	}
	return 1 << d
}

// nthBlock returns the i-th block of p (i < numBlocks). A block holds at
// most 2^12 addresses, so the offset i<<h fits in 128 bits as (hi, lo); the
// pool is aligned, so adding the offset is an OR.
func (p *pool) nthBlock(i uint64) netip.Prefix {
	h := uint(p.cidr.Addr().BitLen() - p.blockBits)
	lo, hi := i<<h, uint64(0)
	if h > 0 {
		hi = i >> (64 - h)
	}
	a := p.cidr.Addr().As16()
	for k := range 8 {
		a[7-k] |= byte(hi >> (8 * k))
		a[15-k] |= byte(lo >> (8 * k))
	}
	addr := netip.AddrFrom16(a)
	if p.cidr.Addr().Is4() {
		addr = addr.Unmap()
	}
	return netip.PrefixFrom(addr, p.blockBits)
}

// parsePool validates and defaults one IPPool.
func parsePool(ip *api.IPPool) (*pool, error) {
	name := ip.GetName()
	c, err := netip.ParsePrefix(ip.Spec.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ippool %q: cidr: %w", name, err)
	}
	if c.Masked() != c {
		return nil, fmt.Errorf("ippool %q: cidr %s has host bits set", name, c)
	}
	sel, err := selector.Parse(ip.Spec.NodeSelector) // "" is all()
	if err != nil {
		return nil, fmt.Errorf("ippool %q: nodeSelector: %w", name, err)
	}
	p := &pool{name: name, cidr: c, blockBits: ip.Spec.BlockSize, disabled: ip.Spec.Disabled,
		nodeSel: sel, uses: ip.Spec.AllowedUses}
	lo, hi := 20, 32
	if c.Addr().Is6() {
		lo, hi = 116, 128
	}
	if p.blockBits == 0 {
		p.blockBits = 26
		if c.Addr().Is6() {
			p.blockBits = 122
		}
	}
	if p.blockBits < lo || p.blockBits > hi {
		return nil, fmt.Errorf("ippool %q: blockSize %d outside %d-%d", name, p.blockBits, lo, hi)
	}
	if p.blockBits < c.Bits() {
		return nil, fmt.Errorf("ippool %q: blockSize %d is larger than the pool %s", name, p.blockBits, c)
	}
	if len(p.uses) == 0 {
		p.uses = []string{api.IPPoolUseWorkload, api.IPPoolUseTunnel}
	}
	return p, nil
}

// snapshot is one consistent read of the Source.
type snapshot struct {
	pools     []*pool
	rs        reservations
	strict    bool
	autoAlloc bool
	maxBlocks int
	cooldown  time.Duration
}

func (m *IPAM) snapshot(ctx context.Context) (*snapshot, error) {
	ips, err := m.cfg.Source.IPPools(ctx)
	if err != nil {
		return nil, fmt.Errorf("read ip pools: %w", err)
	}
	s := &snapshot{autoAlloc: true}
	for _, ip := range ips {
		p, err := parsePool(ip)
		if err != nil {
			return nil, err
		}
		s.pools = append(s.pools, p)
	}
	slices.SortFunc(s.pools, func(a, b *pool) int { return strings.Compare(a.name, b.name) })
	rsv, err := m.cfg.Source.IPReservations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read ip reservations: %w", err)
	}
	if s.rs, err = parseReservations(rsv); err != nil {
		return nil, err
	}
	cfg, err := m.cfg.Source.IPAMConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read ipam configuration: %w", err)
	}
	if cfg != nil {
		s.strict = cfg.StrictAffinity
		if cfg.AutoAllocateBlocks != nil {
			s.autoAlloc = *cfg.AutoAllocateBlocks
		}
		s.maxBlocks = int(cfg.MaxBlocksPerHost)
		if cfg.IPCooldownSeconds != nil {
			if *cfg.IPCooldownSeconds < 0 || *cfg.IPCooldownSeconds > 1200 {
				return nil, fmt.Errorf("ipam configuration: ipCooldownSeconds %d outside 0-1200", *cfg.IPCooldownSeconds)
			}
			s.cooldown = time.Duration(*cfg.IPCooldownSeconds) * time.Second
		}
	}
	return s, nil
}

// poolFor returns the pool containing addr, or nil.
func (s *snapshot) poolFor(addr netip.Addr) *pool {
	for _, p := range s.pools {
		if p.cidr.Contains(addr) {
			return p
		}
	}
	return nil
}

// reservations is the set of reserved CIDRs.
type reservations []netip.Prefix

func parseReservations(rs []*api.IPReservation) (reservations, error) {
	var out reservations
	for _, r := range rs {
		for i, c := range r.Spec.ReservedCIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				// A bare address reserves just itself.
				a, aerr := netip.ParseAddr(c)
				if aerr != nil {
					return nil, fmt.Errorf("ipreservation %q: reservedCIDRs[%d] %q: %w", r.GetName(), i, c, err)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func (rs reservations) contains(a netip.Addr) bool {
	for _, p := range rs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// covers reports whether one reservation contains all of block.
func (rs reservations) covers(block netip.Prefix) bool {
	for _, p := range rs {
		if p.Bits() <= block.Bits() && p.Contains(block.Addr()) {
			return true
		}
	}
	return false
}
