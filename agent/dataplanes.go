package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/calc"
	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/dataplane/route"
	"github.com/brindle-net/brindle/datastore"
)

// neverResync is the route dataplane's own resync interval: the agent
// drives route resyncs itself (RouteRefreshInterval), so the route
// package's ticker is pushed out of the way.
const neverResync = 100 * 365 * 24 * time.Hour

// nftWithNetns closes the namespace file after the dataplane.
type nftWithNetns struct {
	*nft.Dataplane
	ns *os.File
}

func (d nftWithNetns) Close() error {
	err := d.Dataplane.Close()
	if d.ns != nil {
		err = errors.Join(err, d.ns.Close())
	}
	return err
}

// realDataplanes opens the nftables and route dataplanes, bound to the
// network namespace at netns ("" for the agent's own).
func realDataplanes(netns string, base nft.Config, log *slog.Logger) func(Params) (PolicyDataplane, RouteDataplane, error) {
	return func(p Params) (PolicyDataplane, RouteDataplane, error) {
		var nsFile *os.File
		cfg := base
		if cfg.PassMark == 0 && cfg.ClassMask == 0 {
			pass, class, err := nftMarks(p.IptablesMarkMask)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %#x: %w", ParamIptablesMarkMask, p.IptablesMarkMask, err)
			}
			cfg.PassMark, cfg.ClassMask = pass, class
		}
		if netns != "" {
			f, err := os.Open(netns)
			if err != nil {
				return nil, nil, fmt.Errorf("open network namespace: %w", err)
			}
			nsFile = f
			cfg.NetNSFd = int(f.Fd())
		}
		n, err := nft.New(cfg, log.With("dataplane", "nft"))
		if err != nil {
			if nsFile != nil {
				nsFile.Close()
			}
			return nil, nil, err
		}
		r, err := route.New(route.Config{
			InterfacePrefixes: slices.Clone(p.InterfacePrefix),
			ResyncInterval:    neverResync,
			Netns:             netns,
			Logger:            log.With("dataplane", "route"),
		})
		if err != nil {
			_ = nftWithNetns{n, nsFile}.Close()
			return nil, nil, err
		}
		return nftWithNetns{n, nsFile}, r, nil
	}
}

// DumpConfig configures Dump.
type DumpConfig struct {
	Hostname    string
	Datastore   *datastore.Client
	LocalLayers []Layer
	// NftConfig is the nftables configuration to render with (defaults
	// when zero).
	NftConfig nft.Config
}

// Dump connects to the datastore, waits for in-sync, computes this host's
// desired state and renders what the agent would program right now: the
// nftables ruleset and the workload routes. It touches no kernel state.
func Dump(ctx context.Context, cfg DumpConfig) (string, error) {
	a, err := New(Config{Hostname: cfg.Hostname, Datastore: cfg.Datastore, LocalLayers: cfg.LocalLayers})
	if err != nil {
		return "", err
	}
	src, err := a.newSource(ctx)
	if err != nil {
		return "", err
	}
	defer src.Stop()
	l := &loop{a: a, calc: calc.New(calc.Config{Hostname: cfg.Hostname, InterfacePrefixes: localPrefixes(cfg.LocalLayers)}),
		felix: map[string]*api.FelixConfigurationSpec{}}
	for !l.synced {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the datastore to be in sync: %w", ctx.Err())
		case b, ok := <-src.Updates():
			if !ok {
				return "", errors.New("the datastore stream ended before in-sync")
			}
			l.feed(b)
		}
	}
	if l.res, err = a.resolve(l.felix); err != nil {
		return "", fmt.Errorf("configuration: %w", err)
	}
	s := l.state()
	rules, err := nft.Render(cfg.NftConfig, &s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# brindle node --dump: host %s, datastore revision %d\n", cfg.Hostname, l.rev)
	b.WriteString("# nftables\n")
	b.WriteString(rules)
	if !strings.HasSuffix(rules, "\n") {
		b.WriteByte('\n')
	}
	b.WriteString("# routes\n")
	b.WriteString(RenderRoutes(calc.Routes(&s)))
	return b.String(), nil
}

// RenderRoutes renders workload routes in `ip route` style, sorted by
// destination: "10.65.0.1/32 dev cali0 proto brindle scope link".
func RenderRoutes(rs map[string][]netip.Prefix) string {
	type line struct {
		dst   netip.Prefix
		iface string
	}
	var lines []line
	for iface, ps := range rs {
		for _, p := range ps {
			lines = append(lines, line{p, iface})
		}
	}
	slices.SortFunc(lines, func(a, b line) int {
		if c := a.dst.Addr().Compare(b.dst.Addr()); c != 0 {
			return c
		}
		return strings.Compare(a.iface, b.iface)
	})
	var b strings.Builder
	for _, l := range lines {
		if l.dst.Addr().Is4() {
			fmt.Fprintf(&b, "%s dev %s proto %s scope link\n", l.dst, l.iface, route.ProtocolName)
		} else {
			fmt.Fprintf(&b, "%s dev %s proto %s metric 1024\n", l.dst, l.iface, route.ProtocolName)
		}
	}
	return b.String()
}

// Interface assertions.
var (
	_ PolicyDataplane = nftWithNetns{}
	_ RouteDataplane  = (*route.Dataplane)(nil)
	_ Source          = (*datastore.Watcher)(nil)
)
