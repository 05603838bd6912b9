package routing

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// DefaultRouteProtocol marks the kernel routes the speaker installs (routes
// learned from peers and the blackholes of owned blocks): 99, one above the
// route dataplane's 98 for workload routes, so each reconciler finds and
// prunes only its own. iproute2 names 99 "ospf" in some rt_protos files;
// nothing on a Brindle host runs OSPF, and Calico's numbers (3, 80, BIRD's
// 12) are elsewhere.
const DefaultRouteProtocol netlink.RouteProtocol = 99

// Defaults of the speaker's session timers (GoBGP's and RFC 4271's).
const (
	DefaultHoldTime       = 90 * time.Second
	DefaultConnectRetry   = 5 * time.Second
	DefaultResyncInterval = 90 * time.Second
)

// Config configures a Speaker. The speaker works in the network namespace
// of the process that runs it: GoBGP dials peers from goroutines on any OS
// thread, so the whole process must live in the host's namespace (the lab
// runs one agent process per host with `ip netns exec`).
type Config struct {
	// Logger receives the speaker's and GoBGP's logs; nil discards them.
	Logger *slog.Logger
	// RouteProtocol marks our kernel routes. Default DefaultRouteProtocol;
	// 0–4 are shared with everybody and 98 is the route dataplane's, so
	// they are rejected.
	RouteProtocol netlink.RouteProtocol
	// RouteMetric is the metric of installed routes; default 0.
	RouteMetric int
	// ListenAddresses are the addresses the BGP listener binds; default
	// ["0.0.0.0"].
	ListenAddresses []string
	// HoldTime of every session; keepalives go every HoldTime/3. Default
	// DefaultHoldTime. Tests use 3 s.
	HoldTime time.Duration
	// ConnectRetry is the wait between dials. Default DefaultConnectRetry.
	ConnectRetry time.Duration
	// DisableGracefulRestart turns graceful restart off on every session:
	// peers then drop our routes as soon as a session fails.
	DisableGracefulRestart bool
	// GracefulOnHoldExpiry keeps GoBGP's own behaviour for a peer whose
	// hold timer expires: its routes stay as stale for its restart time
	// more (RFC 8538). By default the speaker drops them at once: a
	// restarting peer closes its TCP session, a silent one is lost.
	GracefulOnHoldExpiry bool
	// RestartTime overrides DefaultRestartTime for sessions whose Peer has
	// none; it is also how long after the first Apply the speaker waits for
	// peers before it sweeps learned routes left by an earlier run.
	RestartTime time.Duration
	// ResyncInterval is how often kernel routes are read back and repaired.
	// Default DefaultResyncInterval.
	ResyncInterval time.Duration
}

// WithDefaults returns c with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RouteProtocol == 0 {
		c.RouteProtocol = DefaultRouteProtocol
	}
	if c.ListenAddresses == nil {
		c.ListenAddresses = []string{"0.0.0.0"}
	}
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	if c.RestartTime == 0 {
		c.RestartTime = DefaultRestartTime
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	return c
}

// Validate reports the first problem with a (defaulted) Config.
func (c Config) Validate() error {
	switch {
	case c.RouteProtocol <= 4:
		return fmt.Errorf("routing config: RouteProtocol %d is shared with other software (0-4); pick another", c.RouteProtocol)
	case c.RouteProtocol == 98:
		return fmt.Errorf("routing config: RouteProtocol 98 is the route dataplane's; pick another")
	case c.RouteMetric < 0:
		return fmt.Errorf("routing config: RouteMetric %d is negative", c.RouteMetric)
	case c.HoldTime < 3*time.Second || c.HoldTime > 65535*time.Second:
		return fmt.Errorf("routing config: HoldTime %s: want 3s to 65535s (RFC 4271)", c.HoldTime)
	case c.ConnectRetry < time.Second:
		return fmt.Errorf("routing config: ConnectRetry %s: want at least 1s", c.ConnectRetry)
	case c.RestartTime < time.Second || c.RestartTime > 4095*time.Second:
		return fmt.Errorf("routing config: RestartTime %s: want 1s to 4095s (RFC 4724)", c.RestartTime)
	case c.ResyncInterval < time.Second:
		return fmt.Errorf("routing config: ResyncInterval %s: want at least 1s", c.ResyncInterval)
	case len(c.ListenAddresses) == 0:
		return fmt.Errorf("routing config: ListenAddresses is empty")
	}
	for i, a := range c.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("routing config: ListenAddresses[%d] %q is not an IP", i, a)
		}
	}
	return nil
}

// validate checks a Desired before the speaker acts on it.
func (d Desired) validate() error {
	if !d.Enabled {
		return nil
	}
	if !d.RouterID.Is4() {
		return fmt.Errorf("desired: RouterID %v is not IPv4", d.RouterID)
	}
	if d.ASNumber == 0 {
		return fmt.Errorf("desired: ASNumber is 0")
	}
	seen := map[netip.Addr]bool{}
	for i, p := range d.Peers {
		switch {
		case !p.Address.Is4():
			return fmt.Errorf("desired: Peers[%d] %s: address %v is not IPv4", i, p.Name, p.Address)
		case seen[p.Address]:
			return fmt.Errorf("desired: Peers[%d] %s: address %s is listed twice", i, p.Name, p.Address)
		case p.ASNumber == 0:
			return fmt.Errorf("desired: Peers[%d] %s: ASNumber is 0", i, p.Name)
		case p.RestartTime < 0 || p.RestartTime > 4095*time.Second:
			return fmt.Errorf("desired: Peers[%d] %s: RestartTime %s: want 0 to 4095s", i, p.Name, p.RestartTime)
		case p.KeepaliveTime < 0:
			return fmt.Errorf("desired: Peers[%d] %s: KeepaliveTime %s is negative", i, p.Name, p.KeepaliveTime)
		}
		seen[p.Address] = true
	}
	for i, pfx := range d.Prefixes {
		if !pfx.Addr().Is4() || pfx.Masked() != pfx {
			return fmt.Errorf("desired: Prefixes[%d] %v: want a masked IPv4 prefix", i, pfx)
		}
	}
	for i, pfx := range d.Blackholes {
		if !pfx.Addr().Is4() || pfx.Masked() != pfx {
			return fmt.Errorf("desired: Blackholes[%d] %v: want a masked IPv4 prefix", i, pfx)
		}
	}
	return nil
}
