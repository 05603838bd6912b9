package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/vishvananda/netlink"
)

// Speaker runs GoBGP inside the agent: it holds the sessions and
// advertisements of a Desired, and programs the routes it learns into the
// kernel. See doc.go for the contract.
type Speaker struct {
	cfg Config
	log *slog.Logger
	bgp *server.BgpServer
	k   *kernel
	nl  *netlink.Handle

	mu sync.Mutex // guards the fields below; Apply, Stop and the loop's convergence check take it
	// running is true between StartBgp and StopBgp.
	running bool
	global  globalKey
	peers   map[netip.Addr]Peer
	paths   map[netip.Prefix]bool
	// firstApply is when the first enabled Desired was applied; the
	// convergence deadline counts from it.
	firstApply time.Time
	converged  bool
	stopped    bool
	stats      Stats
	// desired is the last Desired applied (apiPeer needs its AS and
	// cluster ID to re-add a peer).
	desired Desired

	// sentNotif is, per peer address, how many NOTIFICATIONs we had sent
	// to it when it was last seen Established. Owned by the loop goroutine.
	sentNotif map[string]uint64

	cancel context.CancelFunc
	done   chan struct{}
}

type globalKey struct {
	as       uint32
	routerID netip.Addr
	port     uint16
}

// Stats counts what the speaker did; Apply of an unchanged Desired moves
// none of the BGP counters.
type Stats struct {
	PeersAdded     uint64 `json:"peersAdded"`
	PeersRemoved   uint64 `json:"peersRemoved"`
	PathsAdded     uint64 `json:"pathsAdded"`
	PathsWithdrawn uint64 `json:"pathsWithdrawn"`
	BGPRestarts    uint64 `json:"bgpRestarts"`
	// SilentPeersDropped counts peers whose routes were dropped at hold
	// timer expiry instead of being kept for their restart time.
	SilentPeersDropped uint64 `json:"silentPeersDropped"`
	RouteWrites        uint64 `json:"routeWrites"`
	RouteDeletes       uint64 `json:"routeDeletes"`
	// Converged is true once learned routes left by an earlier run may be
	// swept (see doc.go).
	Converged bool `json:"converged"`
}

var ipv4Unicast = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// New returns a Speaker; nothing runs until Start.
func New(cfg Config) (*Speaker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Speaker{
		cfg:       cfg,
		log:       cfg.Logger,
		peers:     map[netip.Addr]Peer{},
		paths:     map[netip.Prefix]bool{},
		sentNotif: map[string]uint64{},
	}, nil
}

// Start starts GoBGP's loop, the best-path watcher and the speaker's own
// loop (convergence, then periodic kernel resync). BGP itself starts with
// the first enabled Apply. Start returns once everything runs; the loops
// stop with Stop or StopAndWithdraw (ctx only bounds Start).
func (s *Speaker) Start(ctx context.Context) error {
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("routing: netlink handle: %w", err)
	}
	s.nl = nl
	s.k = newKernel(s.log, nl, s.cfg.RouteProtocol, s.cfg.RouteMetric)
	s.bgp = server.NewBgpServer(server.LoggerOption(newGoBGPLogger(s.log)))
	go s.bgp.Serve()

	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	req := &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
	}}
	if err := s.bgp.WatchEvent(loopCtx, req, s.onEvent); err != nil {
		cancel()
		s.bgp.Stop()
		nl.Close()
		return fmt.Errorf("routing: watch best paths: %w", err)
	}
	go s.loop(loopCtx)
	return ctx.Err()
}

// onEvent programs best-path changes into the kernel. GoBGP calls it from
// its watcher goroutine, one event at a time.
func (s *Speaker) onEvent(ev *api.WatchEventResponse) {
	t := ev.GetTable()
	if t == nil {
		return
	}
	for _, p := range t.Paths {
		pfx, nh, local, ok := decodePath(p)
		if !ok {
			continue
		}
		if p.IsWithdraw || local {
			s.k.forget(pfx)
			continue
		}
		s.k.learn(pfx, nh)
	}
}

// decodePath extracts an IPv4 unicast path's prefix and next hop; local is
// true for paths we originate.
func decodePath(p *api.Path) (pfx netip.Prefix, nh netip.Addr, local, ok bool) {
	if p.Family == nil || p.Family.Afi != api.Family_AFI_IP || p.Family.Safi != api.Family_SAFI_UNICAST || p.Nlri == nil {
		return pfx, nh, false, false
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return pfx, nh, false, false
	}
	ipp, isPrefix := nlri.(*bgp.IPAddrPrefix)
	if !isPrefix {
		return pfx, nh, false, false
	}
	a, isAddr := netip.AddrFromSlice(ipp.Prefix)
	if !isAddr {
		return pfx, nh, false, false
	}
	pfx = netip.PrefixFrom(a.Unmap(), int(ipp.Length)).Masked()
	if n, err := netip.ParseAddr(p.NeighborIp); err != nil || n.IsUnspecified() {
		return pfx, nh, true, true
	}
	if p.IsWithdraw {
		return pfx, nh, false, true
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return pfx, nh, false, false
	}
	for _, at := range attrs {
		switch a := at.(type) {
		case *bgp.PathAttributeNextHop:
			nh, _ = netip.AddrFromSlice(a.Value)
		case *bgp.PathAttributeMpReachNLRI:
			nh, _ = netip.AddrFromSlice(a.Nexthop)
		}
	}
	nh = nh.Unmap()
	return pfx, nh, false, nh.IsValid() && !nh.IsUnspecified()
}

// loop waits for convergence, lets the kernel sweep, then resyncs
// periodically.
func (s *Speaker) loop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastResync := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.cfg.GracefulOnHoldExpiry && !s.cfg.DisableGracefulRestart {
			s.dropSilentPeers(ctx)
		}
		s.mu.Lock()
		converged := s.converged
		s.mu.Unlock()
		if !converged {
			if s.checkConverged(ctx) {
				// One more tick lets the watcher catch up with the
				// updates that came before the End-of-RIBs.
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s.mu.Lock()
				s.converged = true
				s.mu.Unlock()
				if err := s.k.setInSync(); err != nil {
					s.log.Warn("routing: kernel resync", "err", err)
				}
				s.log.Info("routing: BGP converged; stale learned routes swept")
				lastResync = time.Now()
			}
			continue
		}
		if time.Since(lastResync) >= s.cfg.ResyncInterval {
			if err := s.k.resync(); err != nil {
				s.log.Warn("routing: kernel resync", "err", err)
			}
			lastResync = time.Now()
		}
	}
}

// dropSilentPeers ends graceful-restart helper mode for peers whose
// session ended with a NOTIFICATION from us — in practice the hold timer
// expired: the peer went silent (host frozen, powered off or cut off)
// rather than restarting, since a restarting speaker closes its TCP
// session. GoBGP would keep their routes as stale for the restart time on
// top of the hold time; re-adding the peer drops them now. A peer whose
// process died (TCP closed, no NOTIFICATION) keeps graceful restart.
func (s *Speaker) dropSilentPeers(ctx context.Context) {
	var silent []string
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		addr := p.GetConf().GetNeighborAddress()
		sent := p.GetState().GetMessages().GetSent().GetNotification()
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			s.sentNotif[addr] = sent
			return
		}
		prev, seen := s.sentNotif[addr]
		if seen && sent > prev && p.GetGracefulRestart().GetPeerRestarting() {
			silent = append(silent, addr)
		}
	})
	if err != nil {
		return
	}
	for _, addr := range silent {
		delete(s.sentNotif, addr)
		if err := s.readdPeer(ctx, addr); err != nil {
			s.log.Warn("routing: drop routes of a silent peer", "peer", addr, "err", err)
			continue
		}
		s.log.Info("routing: hold timer expired; dropped the silent peer's routes instead of keeping them for its restart time", "peer", addr)
	}
}

// readdPeer deletes and re-adds a peer with the same configuration, which
// drops every route learned from it.
func (s *Speaker) readdPeer(ctx context.Context, addr string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[a]
	if !ok || !s.running || s.stopped {
		return nil
	}
	if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr}); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p, s.desired)}); err != nil {
		delete(s.peers, a)
		return fmt.Errorf("add back: %w", err)
	}
	s.stats.SilentPeersDropped++
	return nil
}

// checkConverged reports whether every desired peer is established and has
// sent its End-of-RIB (or does not do graceful restart), or the restart
// time since the first Apply has passed.
func (s *Speaker) checkConverged(ctx context.Context) bool {
	s.mu.Lock()
	first, stopped := s.firstApply, s.stopped
	want := make(map[string]bool, len(s.peers))
	for a := range s.peers {
		want[a.String()] = true
	}
	s.mu.Unlock()
	if first.IsZero() || stopped {
		return false
	}
	if time.Since(first) >= s.cfg.RestartTime {
		return true
	}
	done := 0
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if !want[p.GetConf().GetNeighborAddress()] {
			return
		}
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		for _, af := range p.AfiSafis {
			gr := af.GetMpGracefulRestart().GetState()
			if gr.GetReceived() && !gr.GetEndOfRibReceived() {
				return
			}
		}
		done++
	})
	return err == nil && done == len(want)
}

// Apply makes GoBGP hold exactly d's sessions and advertisements and the
// kernel d's blackholes. It is declarative: applying the same Desired again
// changes nothing. A change of AS, router ID or listen port restarts BGP
// (every session drops). A disabled Desired stops BGP and withdraws
// everything.
func (s *Speaker) Apply(d Desired) error {
	if err := d.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bgp == nil {
		return errors.New("routing: Apply before Start")
	}
	if s.stopped {
		return errors.New("routing: Apply after Stop")
	}
	ctx := context.Background()
	if !d.Enabled {
		s.k.setBlackholes(nil)
		return s.stopBGPLocked(ctx)
	}
	g := globalKey{as: d.ASNumber, routerID: d.RouterID, port: d.ListenPort}
	if !s.running || g != s.global {
		if err := s.stopBGPLocked(ctx); err != nil {
			return err
		}
		port := int32(g.port)
		if port == 0 {
			port = int32(DefaultListenPort)
		}
		err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn:             g.as,
			RouterId:        g.routerID.String(),
			ListenPort:      port,
			ListenAddresses: s.cfg.ListenAddresses,
		}})
		if err != nil {
			return fmt.Errorf("routing: start BGP (AS %d, router ID %s, port %d): %w", g.as, g.routerID, port, err)
		}
		s.running, s.global = true, g
		s.stats.BGPRestarts++
	}
	if s.firstApply.IsZero() {
		s.firstApply = time.Now()
	}
	s.desired = d
	var errs []error
	// Peers: remove, then add (a changed peer is removed and re-added).
	want := make(map[netip.Addr]Peer, len(d.Peers))
	for _, p := range d.Peers {
		want[p.Address] = p
	}
	for a, have := range s.peers {
		if w, ok := want[a]; ok && w == have {
			continue
		}
		if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s (%s): %w", a, have.Name, err))
			continue
		}
		delete(s.peers, a)
		s.stats.PeersRemoved++
	}
	for _, p := range d.Peers {
		if _, ok := s.peers[p.Address]; ok {
			continue
		}
		if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p, d)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s (%s): %w", p.Address, p.Name, err))
			continue
		}
		s.peers[p.Address] = p
		s.stats.PeersAdded++
	}
	// Paths.
	wantPaths := make(map[netip.Prefix]bool, len(d.Prefixes))
	for _, p := range d.Prefixes {
		wantPaths[p] = true
	}
	for p := range s.paths {
		if wantPaths[p] {
			continue
		}
		if err := s.bgp.DeletePath(ctx, &api.DeletePathRequest{
			TableType: api.TableType_GLOBAL, Family: ipv4Unicast, Path: localPath(p, d.RouterID),
		}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(s.paths, p)
		s.stats.PathsWithdrawn++
	}
	for _, p := range d.Prefixes {
		if s.paths[p] {
			continue
		}
		if _, err := s.bgp.AddPath(ctx, &api.AddPathRequest{
			TableType: api.TableType_GLOBAL, Path: localPath(p, d.RouterID),
		}); err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.paths[p] = true
		s.stats.PathsAdded++
	}
	s.k.setBlackholes(d.Blackholes)
	s.k.setOverlay(d.OverlayPools)
	return errors.Join(errs...)
}

// stopBGPLocked stops BGP with a Cease to every peer (they drop our routes
// at once) and forgets sessions and paths.
func (s *Speaker) stopBGPLocked(ctx context.Context) error {
	if !s.running {
		return nil
	}
	if err := s.bgp.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		return fmt.Errorf("routing: stop BGP: %w", err)
	}
	s.running = false
	s.peers = map[netip.Addr]Peer{}
	s.paths = map[netip.Prefix]bool{}
	return nil
}

func localPath(p netip.Prefix, nh netip.Addr) *api.Path {
	path, _ := apiutil.NewPath(
		bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()),
		false,
		[]bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			bgp.NewPathAttributeNextHop(nh.String()),
		},
		time.Now(),
	)
	return path
}

func seconds(d time.Duration) uint64 { return uint64((d + time.Second/2) / time.Second) }

// apiPeer renders a Peer as GoBGP's neighbor config.
func (s *Speaker) apiPeer(p Peer, d Desired) *api.Peer {
	hold := seconds(s.cfg.HoldTime)
	keepalive := hold / 3
	if p.KeepaliveTime > 0 {
		keepalive = max(seconds(p.KeepaliveTime), 1)
	}
	restart := p.RestartTime
	if restart == 0 {
		restart = s.cfg.RestartTime
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASNumber,
			LocalAsn:        p.LocalASNumber,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: keepalive,
			ConnectRetry:      seconds(s.cfg.ConnectRetry),
		}},
		Transport: &api.Transport{
			PassiveMode: p.Passive,
			RemotePort:  uint32(p.Port),
		},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: ipv4Unicast, Enabled: true},
		}},
	}
	if ap.Transport.RemotePort == 0 {
		ap.Transport.RemotePort = uint32(DefaultListenPort)
	}
	if p.SourceAddress.IsValid() {
		ap.Transport.LocalAddress = p.SourceAddress.String()
	}
	if !s.cfg.DisableGracefulRestart {
		ap.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(seconds(restart))}
		ap.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	if p.RouteReflectorClient {
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: d.ClusterID}
	}
	localAS := d.ASNumber
	if p.LocalASNumber != 0 {
		localAS = p.LocalASNumber
	}
	switch {
	case p.TTLSecurity > 0:
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(256 - int(p.TTLSecurity))}
	case p.ASNumber != localAS:
		// Calico's BIRD template peers with multihop (TTL 255) unless TTL
		// security is set; GoBGP's eBGP default is TTL 1.
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	return ap
}

// Stop ends the speaker with graceful-restart semantics: kernel routes stay
// as they are, and every session is closed without a NOTIFICATION, so peers
// that negotiated graceful restart keep our routes (as stale) for the
// restart time while the agent comes back. With DisableGracefulRestart,
// Stop is StopAndWithdraw without the kernel purge.
func (s *Speaker) Stop() error {
	return s.stop(false)
}

// StopAndWithdraw ends the speaker for good: peers get a Cease and drop
// our routes at once, and every kernel route of ours is deleted.
func (s *Speaker) StopAndWithdraw() error {
	return s.stop(true)
}

func (s *Speaker) stop(withdraw bool) error {
	s.mu.Lock()
	if s.bgp == nil || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	var errs []error
	if !withdraw {
		s.k.freeze()
	}
	s.mu.Lock()
	if s.running && !withdraw && !s.cfg.DisableGracefulRestart {
		ports := []uint16{s.global.port}
		for _, p := range s.peers {
			ports = append(ports, p.Port)
		}
		addrs := make([]netip.Addr, 0, len(s.peers))
		for a := range s.peers {
			addrs = append(addrs, a)
		}
		n, err := abandonSessions(addrs, ports)
		if err != nil {
			errs = append(errs, fmt.Errorf("routing: close sessions: %w", err))
		}
		s.log.Debug("routing: sessions closed without notification", "count", n)
	}
	if err := s.stopBGPLocked(context.Background()); err != nil {
		errs = append(errs, err)
	}
	s.mu.Unlock()
	s.cancel()
	<-s.done
	if withdraw {
		if err := s.k.purge(); err != nil {
			errs = append(errs, fmt.Errorf("routing: remove kernel routes: %w", err))
		}
	}
	s.bgp.Stop()
	s.nl.Close()
	return errors.Join(errs...)
}

// PeerStatus is one session as `brindlectl node status` shows it. It
// serialises to JSON for the agent's local API.
type PeerStatus struct {
	Name                 string     `json:"name"`
	Address              netip.Addr `json:"address"`
	Port                 uint16     `json:"port,omitempty"`
	ASNumber             uint32     `json:"asNumber"`
	Type                 PeerType   `json:"type"`
	RouteReflectorClient bool       `json:"routeReflectorClient,omitempty"`
	Passive              bool       `json:"passive,omitempty"`
	// State is Idle, Connect, Active, OpenSent, OpenConfirm or
	// Established.
	State string `json:"state"`
	// Since is when the session reached State (Established) or last went
	// down; zero when unknown.
	Since            time.Time `json:"since,omitzero"`
	RoutesReceived   uint64    `json:"routesReceived"`
	RoutesAccepted   uint64    `json:"routesAccepted"`
	RoutesAdvertised uint64    `json:"routesAdvertised"`
}

// TypeString is Calico's wording: "node-to-node mesh", "global", "node
// specific", with ", route reflector client" when we reflect to the peer.
func (p PeerStatus) TypeString() string {
	var t string
	switch p.Type {
	case PeerMesh:
		t = "node-to-node mesh"
	case PeerGlobal:
		t = "global"
	case PeerNode:
		t = "node specific"
	default:
		t = string(p.Type)
	}
	if p.RouteReflectorClient {
		t += ", route reflector client"
	}
	return t
}

var sessionStates = map[api.PeerState_SessionState]string{
	api.PeerState_IDLE:        "Idle",
	api.PeerState_CONNECT:     "Connect",
	api.PeerState_ACTIVE:      "Active",
	api.PeerState_OPENSENT:    "OpenSent",
	api.PeerState_OPENCONFIRM: "OpenConfirm",
	api.PeerState_ESTABLISHED: "Established",
}

// Status lists the sessions, sorted by address. It is safe to call at any
// time, from any goroutine.
func (s *Speaker) Status() []PeerStatus {
	s.mu.Lock()
	if s.bgp == nil || !s.running {
		s.mu.Unlock()
		return nil
	}
	peers := make(map[string]Peer, len(s.peers))
	for a, p := range s.peers {
		peers[a.String()] = p
	}
	s.mu.Unlock()
	var out []PeerStatus
	_ = s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(ap *api.Peer) {
		p, ok := peers[ap.GetConf().GetNeighborAddress()]
		if !ok {
			return
		}
		st := PeerStatus{
			Name: p.Name, Address: p.Address, Port: p.Port, ASNumber: p.ASNumber, Type: p.Type,
			RouteReflectorClient: p.RouteReflectorClient, Passive: p.Passive,
			State: sessionStates[ap.GetState().GetSessionState()],
		}
		if st.State == "" {
			st.State = "Idle"
		}
		ts := ap.GetTimers().GetState()
		if st.State == "Established" {
			if u := ts.GetUptime(); u != nil && u.GetSeconds() > 0 {
				st.Since = u.AsTime()
			}
		} else if dt := ts.GetDowntime(); dt != nil && dt.GetSeconds() > 0 {
			st.Since = dt.AsTime()
		}
		for _, af := range ap.AfiSafis {
			if as := af.GetState(); as != nil {
				st.RoutesReceived += as.Received
				st.RoutesAccepted += as.Accepted
				adv := as.Advertised
				// GoBGP counts the End-of-RIB marker it sends to peers
				// that negotiated graceful restart.
				if adv > 0 && af.GetMpGracefulRestart().GetState().GetEnabled() {
					adv--
				}
				st.RoutesAdvertised += adv
			}
		}
		out = append(out, st)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// Stats returns the speaker's counters.
func (s *Speaker) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.Converged = s.converged
	s.mu.Unlock()
	if s.k != nil {
		st.RouteWrites, st.RouteDeletes = s.k.counts()
	}
	return st
}

// Routes renders the kernel routes the speaker wants, `ip route` style
// (for debugging and the agent's local API).
func (s *Speaker) Routes() string {
	if s.k == nil {
		return ""
	}
	return s.k.dump()
}
