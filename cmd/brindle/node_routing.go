package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/routing"
	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipAutodetect is the --ip value that finds the node's address itself.
const ipAutodetect = "autodetect"

// nodeRoutingFlags are the BGP flags of `brindle node` (docs/routing.md).
type nodeRoutingFlags struct {
	ip          string
	as          string
	noBGP       bool
	holdTime    time.Duration
	restartTime time.Duration
}

// addNodeRoutingFlags registers the BGP flags of `brindle node`.
func addNodeRoutingFlags(f *pflag.FlagSet, fl *nodeRoutingFlags) {
	f.StringVar(&fl.ip, "ip", ipAutodetect, "this node's IPv4 address/length, written to Node spec.bgp.ipv4Address; \"autodetect\": the first global IPv4 address of the interface holding the default route")
	f.StringVar(&fl.as, "as", "", "this node's AS number, written to Node spec.bgp.asNumber (e.g. 64512 or 1.10); empty: leave it as it is")
	f.BoolVar(&fl.noBGP, "no-bgp", false, "register the Node but run no BGP speaker (e.g. VXLAN-only networks)")
	f.DurationVar(&fl.holdTime, "bgp-hold-time", routing.DefaultHoldTime, "BGP hold time: a peer silent this long is down")
	f.DurationVar(&fl.restartTime, "bgp-restart-time", defaultNodeRestartTime, "graceful-restart time advertised to peers: how long they keep this node's routes after its BGP process goes away (BGPConfiguration nodeMeshMaxRestartTime and BGPPeer maxRestartTime override it per session)")
}

// defaultNodeRestartTime is two thirds of the default hold time, so that a
// host whose process died is withdrawn by its peers within the hold time,
// as a silent one is (docs/routing.md, "Host loss").
const defaultNodeRestartTime = 60 * time.Second

// startNodeRouting registers this node (Node spec.bgp.ipv4Address, and
// asNumber with --as) and, unless BGP is off, starts the BGP daemon and
// mounts its status at routing.StatusPath on the local API. The returned
// function stops the daemon gracefully (peers keep this node's routes for
// the restart time).
func startNodeRouting(ctx context.Context, fl nodeFlags, client *datastore.Client, hostname string, handlers map[string]http.Handler, agentOf func() *agent.Agent, logger *slog.Logger) (func(), error) {
	rf := fl.routing
	noBGP := rf.noBGP
	reason := "started with --no-bgp"
	if !noBGP && fl.netns != "" {
		// The speaker dials from the process's own namespace.
		noBGP, reason = true, "--netns: the BGP speaker works only in the process's own network namespace (run under ip netns exec instead)"
		logger.Warn("BGP is off", "reason", reason)
	}
	var as *api.ASNumber
	if rf.as != "" {
		n, err := api.ParseASNumber(rf.as)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--as %q: want an AS number such as 64512 or 1.10", rf.as)
		}
		as = &n
	}
	ip, err := nodeIP(rf.ip, fl.netns)
	switch {
	case err != nil && noBGP && rf.ip == ipAutodetect:
		logger.Warn("node not registered: no address found", "err", err)
	case err != nil:
		return nil, err
	default:
		var orch *api.OrchRef
		if fl.kubeconfig != "" || os.Getenv("BRINDLE_KUBECONFIG") != "" {
			orch = &api.OrchRef{Orchestrator: api.OrchestratorKubernetes, NodeName: hostname}
		}
		if err := registerNode(ctx, client, hostname, ip, as, orch, logger); err != nil {
			return nil, err
		}
	}
	pattern := "GET " + routing.StatusPath
	if noBGP {
		st := routing.DisabledStatus(hostname, reason)
		handlers[pattern] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { routing.ServeStatus(w, st) })
		return func() {}, nil
	}
	d, err := routing.NewDaemon(routing.DaemonConfig{
		NodeName:  hostname,
		Datastore: client,
		Speaker:   routing.Config{HoldTime: rf.holdTime, RestartTime: rf.restartTime},
		Logger:    logger.With("component", "bgp"),
		// Advertise (attract traffic) only once this host's policy is in
		// the kernel.
		Ready: func() bool {
			a := agentOf()
			if a == nil {
				return false
			}
			st := a.Status()
			return st.Programmed || !st.LastProgrammed.IsZero()
		},
	})
	if err != nil {
		return nil, err
	}
	if rf.restartTime > rf.holdTime {
		logger.Warn("--bgp-restart-time is longer than --bgp-hold-time: peers keep a dead host's routes longer than they take to notice a silent one", "restart", rf.restartTime, "hold", rf.holdTime)
	}
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	handlers[pattern] = d
	return func() {
		if err := d.Stop(); err != nil {
			logger.Warn("BGP stop", "err", err)
		}
	}, nil
}

// nodeIP parses --ip, or autodetects the address in the namespace at
// netnsPath ("" = our own).
func nodeIP(flag, netnsPath string) (netip.Prefix, error) {
	if flag != ipAutodetect {
		p, err := netip.ParsePrefix(flag)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("--ip %q: want an IPv4 address with its prefix length, e.g. 10.0.0.5/24, or %q", flag, ipAutodetect)
		}
		return p, nil
	}
	h, err := netlinkHandle(netnsPath)
	if err != nil {
		return netip.Prefix{}, err
	}
	defer h.Close()
	p, err := autodetectIP(h)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("--ip %s: %w; give --ip <address/length>", ipAutodetect, err)
	}
	return p, nil
}

func netlinkHandle(netnsPath string) (*netlink.Handle, error) {
	if netnsPath == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// autodetectIP returns the first global IPv4 address (with its prefix
// length) of the interface holding the main table's IPv4 default route
// (the lowest metric wins).
func autodetectIP(h *netlink.Handle) (netip.Prefix, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list routes: %w", err)
	}
	var defaults []netlink.Route
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) && r.LinkIndex > 0 {
			defaults = append(defaults, r)
		}
	}
	if len(defaults) == 0 {
		return netip.Prefix{}, errors.New("no IPv4 default route")
	}
	slices.SortStableFunc(defaults, func(a, b netlink.Route) int { return a.Priority - b.Priority })
	link, err := h.LinkByIndex(defaults[0].LinkIndex)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("default route's interface %d: %w", defaults[0].LinkIndex, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		return netip.PrefixFrom(ip, bits), nil
	}
	return netip.Prefix{}, fmt.Errorf("interface %s (default route) has no global IPv4 address", link.Attrs().Name)
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// registerNode creates Node name, or updates it with a compare-and-swap,
// so that spec.bgp.ipv4Address is ip (and spec.bgp.asNumber is as, when
// given) and spec.orchRefs holds orch, when given (a node running for
// Kubernetes names its Kubernetes node, so kube-controllers can clean up
// after it even if the node was deleted while they were down). Every other
// field is kept. Nothing is written when nothing changes.
func registerNode(ctx context.Context, client *datastore.Client, name string, ip netip.Prefix, as *api.ASNumber, orch *api.OrchRef, logger *slog.Logger) error {
	kind, _ := api.LookupKind("Node")
	for range 20 {
		obj, err := client.Get(ctx, kind, "", name)
		if errors.Is(err, datastore.ErrNotFound) {
			n := kind.New().(*api.Node)
			n.Name = name
			n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip.String(), ASNumber: as}
			if orch != nil {
				n.Spec.OrchRefs = []api.OrchRef{*orch}
			}
			_, err = client.Create(ctx, n)
			if errors.Is(err, datastore.ErrAlreadyExists) {
				continue
			}
			if err != nil {
				return fmt.Errorf("register node %s: %w", name, err)
			}
			logger.Info("node registered", "node", name, "ipv4Address", ip, "asNumber", as)
			return nil
		}
		if err != nil {
			return fmt.Errorf("register node %s: %w", name, err)
		}
		n, ok := obj.(*api.Node)
		if !ok {
			return fmt.Errorf("register node %s: stored object is a %T", name, obj)
		}
		bgp := n.Spec.BGP
		if bgp == nil {
			bgp = &api.NodeBGPSpec{}
		}
		hasOrch := orch == nil || slices.Contains(n.Spec.OrchRefs, *orch)
		if bgp.IPv4Address == ip.String() && (as == nil || (bgp.ASNumber != nil && *bgp.ASNumber == *as)) && n.Spec.BGP != nil && hasOrch {
			return nil
		}
		bgp.IPv4Address = ip.String()
		if as != nil {
			bgp.ASNumber = as
		}
		n.Spec.BGP = bgp
		if !hasOrch {
			n.Spec.OrchRefs = append(n.Spec.OrchRefs, *orch)
		}
		_, err = client.Update(ctx, n)
		if errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("register node %s: %w", name, err)
		}
		logger.Info("node updated", "node", name, "ipv4Address", ip, "asNumber", as)
		return nil
	}
	return fmt.Errorf("register node %s: gave up after 20 conflicting writes", name)
}
