package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/brindle-net/brindle/datastore"
)

// StatusPath is where the node's local API serves DaemonStatus (GET).
const StatusPath = "/v1/bgp/status"

// Defaults of DaemonConfig.
const (
	DefaultDebounce = 100 * time.Millisecond
	// retry bounds of a failed Apply.
	daemonRetryMin = time.Second
	daemonRetryMax = 30 * time.Second
)

// Source is an ordered datastore update stream: a snapshot, one
// UpdateInSync, then changes (*datastore.Watcher).
type Source interface {
	Updates() <-chan []datastore.Update
	Stop()
}

// DaemonConfig configures a Daemon.
type DaemonConfig struct {
	// NodeName is this node (its Node resource and IPAM affinities).
	// Required.
	NodeName string
	// Datastore is watched (see WatchOptions). Required unless NewSource
	// is set.
	Datastore *datastore.Client
	// NewSource replaces the datastore watch (tests).
	NewSource func(ctx context.Context) (Source, error)
	// Speaker configures the BGP speaker; its Logger defaults to Logger.
	Speaker Config
	// Debounce is how long the daemon waits after a change for more
	// before it plans and applies. Default DefaultDebounce.
	Debounce time.Duration
	// Ready, when set, holds back the first Apply until it returns true
	// (polled every 100 ms): the node uses it so that a host advertises
	// its blocks, and attracts traffic, only once its policy is in the
	// kernel. Once true it is not asked again.
	Ready func() bool
	// Logger receives the daemon's logs. Default: discard.
	Logger *slog.Logger
}

// Daemon keeps a Speaker in line with the datastore: it watches Nodes,
// BGPPeers, BGPConfigurations and the IPAM blocks and affinities, runs Plan
// after every change (debounced) and applies the result. Nothing is
// applied, so nothing advertised, before the watch is in sync (and Ready
// says yes).
type Daemon struct {
	cfg DaemonConfig
	log *slog.Logger
	sp  *Speaker
	src Source
	// apply is sp.Apply (tests replace it).
	apply func(Desired) error

	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex // guards st
	st daemonState
}

// daemonState is the daemon's own part of DaemonStatus.
type daemonState struct {
	inSync     bool
	ready      bool
	applied    bool
	desired    *Desired
	inputProbs []string
	lastApply  time.Time
	lastErr    string
	applies    uint64
	errors     uint64
}

// DaemonStatus is what GET StatusPath returns: the daemon's progress, the
// sessions and what the node wants to advertise.
type DaemonStatus struct {
	Node string `json:"node"`
	// State is one of: "waiting for datastore", "waiting for policy",
	// "running", "off" (the Node has no spec.bgp.ipv4Address, or is
	// missing), "disabled" (the node runs without BGP).
	State string `json:"state"`
	// Reason explains State when it is not "running".
	Reason string `json:"reason,omitempty"`
	// Peers are the sessions, sorted by address.
	Peers []PeerStatus `json:"peers"`
	// Desired is the last plan applied (nil before the first).
	Desired *Desired `json:"desired,omitempty"`
	// InputProblems are datastore values the daemon could not read.
	InputProblems []string `json:"inputProblems,omitempty"`
	Stats         Stats    `json:"stats"`
	// Applies and ApplyErrors count Speaker.Apply calls.
	Applies        uint64    `json:"applies"`
	ApplyErrors    uint64    `json:"applyErrors"`
	LastApply      time.Time `json:"lastApply,omitzero"`
	LastApplyError string    `json:"lastApplyError,omitempty"`
	// Routes are the kernel routes the speaker wants, `ip route` style.
	Routes string `json:"routes,omitempty"`
}

// DisabledStatus is the status a node without BGP serves.
func DisabledStatus(node, reason string) DaemonStatus {
	return DaemonStatus{Node: node, State: "disabled", Reason: reason, Peers: []PeerStatus{}}
}

// NewDaemon checks cfg and builds the speaker; nothing runs until Start.
func NewDaemon(cfg DaemonConfig) (*Daemon, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("routing daemon: NodeName is required")
	}
	if cfg.Datastore == nil && cfg.NewSource == nil {
		return nil, errors.New("routing daemon: Datastore is required")
	}
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("routing daemon: Debounce %s is negative", cfg.Debounce)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Speaker.Logger == nil {
		cfg.Speaker.Logger = cfg.Logger
	}
	sp, err := New(cfg.Speaker)
	if err != nil {
		return nil, err
	}
	return &Daemon{cfg: cfg, log: cfg.Logger, sp: sp, apply: sp.Apply}, nil
}

// Speaker returns the daemon's speaker (for its Status, Stats, Routes).
func (d *Daemon) Speaker() *Speaker { return d.sp }

// Start starts the speaker and the datastore watch, then runs the daemon
// in a goroutine until Stop (or ctx ends: the daemon then stops the same
// way).
func (d *Daemon) Start(ctx context.Context) error {
	if err := d.sp.Start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	src, err := d.newSource(runCtx)
	if err != nil {
		cancel()
		_ = d.sp.Stop()
		return err
	}
	d.src, d.cancel, d.done = src, cancel, make(chan struct{})
	go func() {
		defer close(d.done)
		d.run(runCtx)
	}()
	return nil
}

func (d *Daemon) newSource(ctx context.Context) (Source, error) {
	if d.cfg.NewSource != nil {
		return d.cfg.NewSource(ctx)
	}
	w, err := d.cfg.Datastore.Watch(ctx, WatchOptions(d.cfg.NodeName))
	if err != nil {
		return nil, fmt.Errorf("routing daemon: watch datastore: %w", err)
	}
	return w, nil
}

// Stop ends the daemon with the speaker's graceful Stop: peers keep this
// node's routes for the restart time and the kernel keeps the learned
// ones, so a restarted node picks up where it left off.
func (d *Daemon) Stop() error {
	return d.stop(false)
}

// StopAndWithdraw ends the daemon for good: peers drop this node's routes
// at once and its kernel routes of protocol 99 are deleted.
func (d *Daemon) StopAndWithdraw() error {
	return d.stop(true)
}

func (d *Daemon) stop(withdraw bool) error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	<-d.done
	d.src.Stop()
	if withdraw {
		return d.sp.StopAndWithdraw()
	}
	return d.sp.Stop()
}

// run is the daemon's loop: feed updates, debounce, plan, apply, retry.
func (d *Daemon) run(ctx context.Context) {
	state := newInputState(d.cfg.NodeName)
	var (
		timer   = time.NewTimer(time.Hour)
		synced  bool
		ready   = d.cfg.Ready == nil
		backoff time.Duration
		last    *Desired // last successfully applied
	)
	timer.Stop()
	defer timer.Stop()
	d.setState(func(s *daemonState) { s.ready = ready })
	schedule := func(after time.Duration) {
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(after)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case batch, ok := <-d.src.Updates():
			if !ok {
				d.log.Error("routing daemon: the datastore stream ended")
				return
			}
			changed := false
			for _, u := range batch {
				if u.Type == datastore.UpdateInSync {
					if !synced {
						synced, changed = true, true
						d.setState(func(s *daemonState) { s.inSync = true })
						d.log.Info("routing daemon: in sync with the datastore", "revision", u.Revision)
					}
					continue
				}
				if state.feed(u) {
					changed = true
				}
			}
			if changed && synced && backoff == 0 {
				schedule(d.cfg.Debounce)
			}
			continue
		case <-timer.C:
		}
		if !synced {
			continue
		}
		if !ready {
			if !d.cfg.Ready() {
				schedule(100 * time.Millisecond)
				continue
			}
			ready = true
			d.setState(func(s *daemonState) { s.ready = true })
			d.log.Info("routing daemon: policy programmed; starting BGP")
		}
		in := state.inputs()
		probs := state.problemList()
		desired, err := Plan(in)
		if err != nil {
			// Inputs are built from parsed keys, so this is a bug.
			d.log.Error("routing daemon: plan", "err", err)
			continue
		}
		d.setState(func(s *daemonState) { s.inputProbs = probs })
		if last != nil && reflect.DeepEqual(*last, desired) {
			continue
		}
		err = d.apply(desired)
		now := time.Now()
		d.setState(func(s *daemonState) {
			s.applies++
			s.lastApply = now
			s.applied = true
			dd := desired
			s.desired = &dd
			s.lastErr = ""
			if err != nil {
				s.errors++
				s.lastErr = err.Error()
			}
		})
		if err != nil {
			backoff = min(max(2*backoff, daemonRetryMin), daemonRetryMax)
			d.log.Warn("routing daemon: apply failed; retrying", "err", err, "in", backoff)
			last = nil
			schedule(backoff)
			continue
		}
		if last == nil || !reflect.DeepEqual(last.Problems, desired.Problems) {
			for _, p := range desired.Problems {
				d.log.Warn("routing daemon: skipped", "problem", p)
			}
		}
		backoff = 0
		last = &desired
		d.log.Info("routing daemon: applied", "enabled", desired.Enabled, "peers", len(desired.Peers), "prefixes", len(desired.Prefixes))
	}
}

func (d *Daemon) setState(fn func(*daemonState)) {
	d.mu.Lock()
	fn(&d.st)
	d.mu.Unlock()
}

// Status reports the daemon, its sessions and its last plan.
func (d *Daemon) Status() DaemonStatus {
	d.mu.Lock()
	st := d.st
	d.mu.Unlock()
	out := DaemonStatus{
		Node:           d.cfg.NodeName,
		Desired:        st.desired,
		InputProblems:  st.inputProbs,
		Applies:        st.applies,
		ApplyErrors:    st.errors,
		LastApply:      st.lastApply,
		LastApplyError: st.lastErr,
		Peers:          d.sp.Status(),
		Stats:          d.sp.Stats(),
		Routes:         d.sp.Routes(),
	}
	if out.Peers == nil {
		out.Peers = []PeerStatus{}
	}
	switch {
	case !st.inSync:
		out.State, out.Reason = "waiting for datastore", "the datastore watch has not delivered its snapshot yet"
	case !st.ready:
		out.State, out.Reason = "waiting for policy", "BGP starts once this host's policy is programmed"
	case !st.applied:
		out.State, out.Reason = "waiting for datastore", "no plan applied yet"
	case st.desired != nil && !st.desired.Enabled:
		out.State = "off"
		out.Reason = "BGP is off"
		if len(st.desired.Problems) > 0 {
			out.Reason = st.desired.Problems[0]
		}
	default:
		out.State = "running"
	}
	return out
}

// ServeHTTP serves Status as JSON (mount it at "GET "+StatusPath).
func (d *Daemon) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	ServeStatus(w, d.Status())
}

// ServeStatus writes st as the JSON answer of StatusPath.
func ServeStatus(w http.ResponseWriter, st DaemonStatus) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}
