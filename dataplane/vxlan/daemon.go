package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/dataplane/nat"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
)

// IPAM key prefixes the daemon watches (Calico's etcd layout).
const (
	blockKeyPrefix    = "/calico/ipam/v2/assignment/"
	affinityKeyPrefix = "/calico/ipam/v2/host/"
)

// TunnelHandle is the IPAM handle of a node's VTEP address (Calico's).
func TunnelHandle(node string) string { return "vxlan-tunnel-addr-" + node }

// AttrTypeTunnel is the allocation attribute Calico puts on VTEP addresses.
const AttrTypeTunnel = "vxlanTunnelAddress"

// Source is an ordered update stream: a snapshot, one UpdateInSync, then
// changes (*datastore.Watcher is one).
type Source interface {
	Updates() <-chan []datastore.Update
	Stop()
}

// DaemonConfig configures RunDaemon.
type DaemonConfig struct {
	// Hostname is this node's name. Required.
	Hostname string
	// Datastore is watched (unless NewSource is set) and written (this
	// Node's VTEP address and MAC). Required.
	Datastore *datastore.Client
	// IPAM allocates the VTEP address from a VXLAN pool; nil means the
	// address must already be on the Node (nothing is allocated).
	IPAM *ipam.IPAM
	// VXLAN programs the overlay; nil means it is not programmed.
	VXLAN *Dataplane
	// NAT programs NAT outgoing; nil means it is not programmed.
	NAT *nat.Table
	// ResyncInterval is how often the kernel is read back and repaired.
	// Default DefaultResyncInterval.
	ResyncInterval time.Duration
	// RetryInterval is the wait after a failed apply or VTEP allocation.
	// Default 2 s.
	RetryInterval time.Duration
	// NewSource replaces the datastore watch (tests).
	NewSource func(ctx context.Context) (Source, error)
	// Logger; nil discards.
	Logger *slog.Logger
}

// DaemonStatus is what the daemon last did.
type DaemonStatus struct {
	InSync   bool
	Applied  bool // the last apply succeeded
	Desired  string
	Problems []string
}

// daemon is RunDaemon's state; it is owned by RunDaemon's goroutine.
type daemon struct {
	cfg        DaemonConfig
	log        *slog.Logger
	nodes      map[string]*api.Node
	pools      map[string]*api.IPPool
	blocks     map[string]*ipam.Block // by key
	affinities map[string]bool        // "<node> <cidr>" of confirmed affinities
	synced     bool
	dirty      bool
	problems   string
	status     func(DaemonStatus)
}

// RunDaemon watches Nodes, IPPools and IPAM blocks and affinities, and
// after the first in-sync keeps this node's VTEP allocated and the VXLAN
// and NAT dataplanes programmed. It returns when ctx ends (nil) or the
// watch cannot start.
func RunDaemon(ctx context.Context, cfg DaemonConfig) error {
	return runDaemon(ctx, cfg, nil)
}

func runDaemon(ctx context.Context, cfg DaemonConfig, status func(DaemonStatus)) error {
	if cfg.Hostname == "" {
		return errors.New("vxlan daemon: Hostname is required")
	}
	if cfg.Datastore == nil && cfg.NewSource == nil {
		return errors.New("vxlan daemon: Datastore is required")
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &daemon{cfg: cfg, log: cfg.Logger.With("component", "vxlan-nat"), nodes: map[string]*api.Node{},
		pools: map[string]*api.IPPool{}, blocks: map[string]*ipam.Block{}, affinities: map[string]bool{}, status: status}
	src, err := d.newSource(ctx)
	if err != nil {
		return err
	}
	defer src.Stop()
	resync := time.NewTicker(cfg.ResyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case batch, ok := <-src.Updates():
			if !ok {
				return nil
			}
			for _, u := range batch {
				d.update(u)
			}
		case <-resync.C:
			d.resync()
		case <-retry:
			retry = nil
			d.dirty = true
		}
		// A VTEP write marks the view dirty again: program once more at
		// once rather than wait for the watch to echo it.
		for i := 0; d.synced && d.dirty && retry == nil && i < 3; i++ {
			d.dirty = false
			if err := d.program(ctx); err != nil {
				d.log.Warn("programming failed; will retry", "err", err, "in", cfg.RetryInterval)
				retry = time.After(cfg.RetryInterval)
			}
		}
	}
}

func (d *daemon) newSource(ctx context.Context) (Source, error) {
	if d.cfg.NewSource != nil {
		return d.cfg.NewSource(ctx)
	}
	var opts datastore.WatchOptions
	for _, k := range []string{"Node", "IPPool"} {
		info, ok := api.LookupKind(k)
		if !ok {
			return nil, fmt.Errorf("vxlan daemon: kind %s unknown", k)
		}
		opts.Kinds = append(opts.Kinds, info)
	}
	opts.RawPrefixes = []string{blockKeyPrefix, affinityKeyPrefix}
	w, err := d.cfg.Datastore.Watch(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("vxlan daemon: watch: %w", err)
	}
	return w, nil
}

// update folds one datastore update into the daemon's view.
func (d *daemon) update(u datastore.Update) {
	switch {
	case u.Type == datastore.UpdateInSync:
		if !d.synced {
			d.log.Info("datastore in sync", "revision", u.Revision)
		}
		d.synced, d.dirty = true, true
		return
	case u.Kind == "Node":
		if n, ok := u.Object.(*api.Node); ok && u.Type == datastore.UpdateSet {
			d.nodes[u.Name] = n
		} else {
			delete(d.nodes, u.Name)
		}
	case u.Kind == "IPPool":
		if p, ok := u.Object.(*api.IPPool); ok && u.Type == datastore.UpdateSet {
			d.pools[u.Name] = p
		} else {
			delete(d.pools, u.Name)
		}
	case strings.HasPrefix(u.Key, blockKeyPrefix):
		delete(d.blocks, u.Key)
		if u.Type == datastore.UpdateSet {
			var b ipam.Block
			if err := json.Unmarshal(u.Value, &b); err != nil {
				d.log.Warn("IPAM block does not decode; ignored", "key", u.Key, "err", err)
			} else if !b.Deleted {
				d.blocks[u.Key] = &b
			}
		}
	case strings.HasPrefix(u.Key, affinityKeyPrefix):
		id, ok := affinityID(u.Key)
		if !ok {
			return
		}
		delete(d.affinities, id)
		if u.Type == datastore.UpdateSet {
			var a ipam.Affinity
			if err := json.Unmarshal(u.Value, &a); err == nil && a.State == ipam.AffinityConfirmed && !a.Deleted {
				d.affinities[id] = true
			}
		}
	default:
		return
	}
	d.dirty = true
}

// affinityID turns /calico/ipam/v2/host/<node>/ipv4/block/<a.b.c.d-nn>
// into "<node> a.b.c.d/nn".
func affinityID(key string) (string, bool) {
	parts := strings.Split(strings.TrimPrefix(key, affinityKeyPrefix), "/")
	if len(parts) != 4 || parts[2] != "block" {
		return "", false
	}
	p, ok := parseCIDRName(parts[3])
	if !ok {
		return "", false
	}
	return parts[0] + " " + p.String(), true
}

func parseCIDRName(s string) (netip.Prefix, bool) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s[:i] + "/" + s[i+1:])
	return p, err == nil
}

// input builds the planner's Input from the current view.
func (d *daemon) input() Input {
	in := Input{Hostname: d.cfg.Hostname}
	for _, n := range d.nodes {
		in.Nodes = append(in.Nodes, n)
	}
	for _, p := range d.pools {
		in.Pools = append(in.Pools, p)
	}
	for _, b := range d.blocks {
		in.Blocks = append(in.Blocks, d.block(b))
	}
	return in
}

// block converts a stored block: the owner is the block's affinity host
// when that node holds a confirmed affinity (a pending one counts as
// absent); borrowed addresses are live allocations whose "node" attribute
// names another node.
func (d *daemon) block(b *ipam.Block) Block {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return Block{}
	}
	out := Block{CIDR: cidr}
	if b.Affinity != nil {
		if host, ok := strings.CutPrefix(*b.Affinity, "host:"); ok && d.affinities[host+" "+cidr.Masked().String()] {
			out.Owner = host
		}
	}
	for o, a := range b.Allocations {
		if a == nil || *a < 0 || *a >= len(b.Attributes) {
			continue
		}
		attr := b.Attributes[*a]
		n := attr.Secondary[ipam.AttrNode]
		if attr.ReleasedAt != nil || n == "" || n == out.Owner {
			continue
		}
		addr, ok := nthAddr(cidr.Masked(), o)
		if !ok {
			continue
		}
		if out.Borrowed == nil {
			out.Borrowed = map[netip.Addr]string{}
		}
		out.Borrowed[addr] = n
	}
	return out
}

func nthAddr(p netip.Prefix, n int) (netip.Addr, bool) {
	if n < 0 || n >= 1<<(p.Addr().BitLen()-p.Bits()) {
		return netip.Addr{}, false
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.Addr().Is4()
}

// program: VTEP first (its write comes back through the watch), then the
// overlay, then NAT.
func (d *daemon) program(ctx context.Context) error {
	in := d.input()
	des := Plan(in)
	if p := strings.Join(des.Problems, "; "); p != d.problems {
		d.problems = p
		if p != "" {
			d.log.Info("vxlan plan has problems", "problems", des.Problems)
		}
	}
	var errs []error
	if err := d.ensureVTEP(ctx, in.Pools); err != nil {
		errs = append(errs, err)
	}
	if d.cfg.VXLAN != nil {
		if err := d.cfg.VXLAN.Apply(des); err != nil {
			errs = append(errs, err)
		}
	}
	if d.cfg.NAT != nil {
		if err := d.cfg.NAT.Apply(nat.Plan(in.Pools)); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if d.status != nil {
		d.status(DaemonStatus{InSync: d.synced, Applied: err == nil, Desired: des.String(), Problems: des.Problems})
	}
	return err
}

func (d *daemon) resync() {
	if !d.synced {
		return
	}
	if d.cfg.VXLAN != nil {
		if err := d.cfg.VXLAN.Resync(); err != nil {
			d.log.Warn("vxlan resync", "err", err)
		}
	}
	if d.cfg.NAT != nil {
		if err := d.cfg.NAT.Resync(); err != nil {
			d.log.Warn("nat resync", "err", err)
		}
	}
}

// ensureVTEP keeps this Node's VTEP address and MAC right: allocated from
// an enabled VXLAN pool when some pool uses VXLAN, released and cleared
// when none does. The Node itself is written by someone else (node
// registration); until it exists nothing is done.
func (d *daemon) ensureVTEP(ctx context.Context, pools []*api.IPPool) error {
	host := d.cfg.Hostname
	n := d.nodes[host]
	if n == nil {
		return nil
	}
	vx := VXLANPools(pools)
	addr, addrErr := netip.ParseAddr(n.Spec.IPv4VXLANTunnelAddr)
	if len(vx) == 0 {
		if n.Spec.IPv4VXLANTunnelAddr == "" && n.Spec.VXLANTunnelMACAddr == "" {
			return nil
		}
		if d.cfg.IPAM != nil {
			if _, err := d.cfg.IPAM.ReleaseByHandle(ctx, TunnelHandle(host)); err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
				return fmt.Errorf("vxlan: release VTEP address: %w", err)
			}
		}
		d.log.Info("no VXLAN pool: removing this node's VTEP", "addr", n.Spec.IPv4VXLANTunnelAddr)
		return d.writeNode(ctx, "", "")
	}
	inPool := addrErr == nil && slices.ContainsFunc(vx, func(p *api.IPPool) bool {
		c, err := netip.ParsePrefix(p.Spec.CIDR)
		return err == nil && c.Contains(addr)
	})
	mac := n.Spec.VXLANTunnelMACAddr
	if m, err := net.ParseMAC(mac); err != nil || len(m) != 6 {
		mac = MACFor(host).String()
	}
	if inPool && mac == n.Spec.VXLANTunnelMACAddr {
		return nil
	}
	newAddr := n.Spec.IPv4VXLANTunnelAddr
	if !inPool {
		if d.cfg.IPAM == nil {
			return fmt.Errorf("vxlan: node %s has no VTEP address in a VXLAN pool and no IPAM to allocate one", host)
		}
		var names []string
		for _, p := range vx {
			if !p.Spec.Disabled {
				names = append(names, p.Name)
			}
		}
		if len(names) == 0 {
			return errors.New("vxlan: every VXLAN pool is disabled; no VTEP address can be allocated")
		}
		// A stale address (or one from a run that died before writing the
		// Node) is released first, so the handle holds exactly one.
		if _, err := d.cfg.IPAM.ReleaseByHandle(ctx, TunnelHandle(host)); err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
			return fmt.Errorf("vxlan: release stale VTEP address: %w", err)
		}
		got, err := d.cfg.IPAM.AutoAssign(ctx, ipam.AutoAssignArgs{Num4: 1, HandleID: TunnelHandle(host), Pools: names,
			IntendedUse: api.IPPoolUseTunnel, Attrs: map[string]string{"type": AttrTypeTunnel}})
		if err != nil {
			return fmt.Errorf("vxlan: allocate VTEP address: %w", err)
		}
		if len(got) != 1 {
			return fmt.Errorf("vxlan: allocate VTEP address: got %d addresses", len(got))
		}
		newAddr = got[0].Addr().String()
		d.log.Info("allocated VTEP address", "addr", newAddr, "mac", mac)
	}
	if err := d.writeNode(ctx, newAddr, mac); err != nil {
		if !inPool && d.cfg.IPAM != nil {
			_, _ = d.cfg.IPAM.ReleaseByHandle(ctx, TunnelHandle(host))
		}
		return err
	}
	return nil
}

// writeNode sets this Node's VTEP fields with a compare-and-swap update,
// re-reading on conflict; every other field is kept as stored.
func (d *daemon) writeNode(ctx context.Context, addr, mac string) error {
	kind, _ := api.LookupKind("Node")
	for i := 0; i < 20; i++ {
		obj, err := d.cfg.Datastore.Get(ctx, kind, "", d.cfg.Hostname)
		if err != nil {
			return fmt.Errorf("vxlan: read node %s: %w", d.cfg.Hostname, err)
		}
		n, ok := obj.(*api.Node)
		if !ok {
			return fmt.Errorf("vxlan: node %s: unexpected type %T", d.cfg.Hostname, obj)
		}
		if n.Spec.IPv4VXLANTunnelAddr == addr && n.Spec.VXLANTunnelMACAddr == mac {
			d.nodes[d.cfg.Hostname] = n
			return nil
		}
		n.Spec.IPv4VXLANTunnelAddr, n.Spec.VXLANTunnelMACAddr = addr, mac
		_, err = d.cfg.Datastore.Update(ctx, n)
		if errors.Is(err, datastore.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("vxlan: write node %s: %w", d.cfg.Hostname, err)
		}
		// Our own view takes the written Node at once (the watch brings
		// the same, later): the next plan must not allocate again.
		d.nodes[d.cfg.Hostname] = n
		d.dirty = true
		return nil
	}
	return fmt.Errorf("vxlan: write node %s: gave up after 20 conflicts", d.cfg.Hostname)
}
