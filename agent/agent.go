package agent

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/calc"
	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/dataplane/route"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/desired"
)

// PolicyDataplane is the nftables dataplane as the loop drives it
// (*nft.Dataplane).
type PolicyDataplane interface {
	Apply(*desired.State) error
	Resync() error
	Close() error
}

// RouteDataplane is the route dataplane as the loop drives it
// (*route.Dataplane). If it also has Run(ctx) error (link events), the
// agent runs that in a goroutine for as long as Run of the agent lasts.
type RouteDataplane interface {
	Apply(route.Routes) error
	Resync() error
	Close() error
}

// Source is an ordered datastore update stream: a snapshot, one
// UpdateInSync, then changes (*datastore.Watcher).
type Source interface {
	Updates() <-chan []datastore.Update
	Stop()
}

// ErrRestart is returned by Run when a parameter that needs a restart
// (interfacePrefix, the health or metrics listeners) changed in the
// datastore. Like Felix, the agent exits cleanly and its supervisor starts
// it again with the new value.
var ErrRestart = errors.New("a configuration change needs a restart")

// KindClusterInformation is the kind whose "default" object's
// spec.datastoreReady pauses the agent when false.
const KindClusterInformation = "ClusterInformation"

// WatchedKinds are the resource kinds the agent watches.
var WatchedKinds = []string{
	KindClusterInformation, calc.KindFelixConfiguration, calc.KindTier, calc.KindProfile, calc.KindGlobalNetworkSet, calc.KindNetworkSet,
	calc.KindHostEndpoint, calc.KindWorkloadEndpoint, calc.KindGlobalNetworkPolicy, calc.KindNetworkPolicy,
}

// Config configures an Agent.
type Config struct {
	// Hostname is this node's name: endpoints with spec.node equal to it
	// are programmed here, and FelixConfiguration node.<Hostname> applies.
	// Required.
	Hostname string
	// Datastore is the etcd client: the agent watches it and reads the
	// FelixConfigurations before starting its listeners. Required unless
	// NewSource is set.
	Datastore *datastore.Client
	// LocalLayers are the local parameter sources, highest precedence
	// first: flags, environment, config file. They override the
	// datastore's FelixConfigurations.
	LocalLayers []Layer
	// Netns is the path of the network namespace to program; "" means the
	// agent's own. (Tests program a throwaway host namespace.)
	Netns string
	// Nft is the nftables dataplane's configuration (zero: defaults);
	// its NetNSFd is set from Netns.
	Nft nft.Config
	// SocketPath is where the local API listens (unix socket); "" means
	// no local API.
	SocketPath string
	// LocalHandlers are mounted on the local API beside the agent's own
	// paths, keyed by mux pattern (the CNI service under wire.PathPrefix,
	// the BGP status). Ignored when SocketPath is "".
	LocalHandlers map[string]http.Handler
	// Logger receives the agent's logs. Default: discard.
	Logger *slog.Logger
	// LogLevel, when set, is adjusted to LogSeverityScreen.
	LogLevel *slog.LevelVar
	// RetryMin and RetryMax bound the backoff between failed applies.
	// Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// LivenessTimeout: /livez fails when the loop has not gone round for
	// this long. Default 60s.
	LivenessTimeout time.Duration
	// SettleDelay and SettleMaxDelay: classes the nftables dataplane
	// programmed through its generic chains (a new class in a
	// transaction that adds no other rule; dataplane/nft generic.go) get
	// chains of their own (nft.Dataplane.Settle) once no apply has run
	// for SettleDelay, or at the latest SettleMaxDelay after the first of
	// them, busy or not. Defaults 1s and 10s.
	SettleDelay, SettleMaxDelay time.Duration

	// NewSource replaces the datastore watch (tests).
	NewSource func(ctx context.Context) (Source, error)
	// NewDataplanes replaces the real nftables and route dataplanes
	// (tests). It is called once, at in-sync, with the resolved
	// parameters.
	NewDataplanes func(Params) (PolicyDataplane, RouteDataplane, error)
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Hostname == "" {
		return errors.New("agent config: Hostname is required")
	}
	if c.Datastore == nil && c.NewSource == nil {
		return errors.New("agent config: Datastore is required")
	}
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		return fmt.Errorf("agent config: retry backoff %s..%s is not a range", c.RetryMin, c.RetryMax)
	}
	if c.SettleDelay < 0 || c.SettleMaxDelay < 0 {
		return fmt.Errorf("agent config: settle delays %s and %s must not be negative", c.SettleDelay, c.SettleMaxDelay)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.LivenessTimeout == 0 {
		c.LivenessTimeout = 60 * time.Second
	}
	if c.SettleDelay == 0 {
		c.SettleDelay = time.Second
	}
	if c.SettleMaxDelay == 0 {
		c.SettleMaxDelay = 10 * time.Second
	}
	return c
}

// Agent is the per-host agent. Run is its one loop; the other methods
// read the state it publishes and are safe for concurrent use.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	board *board
}

// New returns an Agent. It connects nothing and touches no kernel state.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: cfg.Logger, m: newMetrics(), board: newBoard(cfg.Hostname)}, nil
}

// Status returns the current status.
func (a *Agent) Status() Status { return a.board.status() }

// WaitProgrammed blocks until the agent has programmed every datastore
// change up to revision rev, or ctx ends; it reports success.
func (a *Agent) WaitProgrammed(ctx context.Context, rev int64) bool {
	return a.board.waitProgrammed(ctx, rev)
}

// WaitEndpoint blocks until the workload endpoint namespace/name is
// programmed at a datastore revision of at least minRev, or ctx ends.
func (a *Agent) WaitEndpoint(ctx context.Context, namespace, name string, minRev int64) EndpointReady {
	return a.board.waitEndpoint(ctx, namespace+"/"+name, minRev)
}

// Run runs the agent until ctx ends (returning nil), the datastore stream
// ends, a listener fails, or a restart-required parameter changes
// (ErrRestart). Nothing in the kernel is touched before the datastore is
// in sync.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Step 1: parameters from local sources and the stored
	// FelixConfigurations.
	felix, err := a.readFelixConfigs(ctx)
	if err != nil {
		return err
	}
	res, err := a.resolve(felix)
	if err != nil {
		return fmt.Errorf("agent: configuration: %w", err)
	}
	a.applyLogLevel(res.Params)
	a.log.Info("agent starting", "hostname", a.cfg.Hostname, "config", describe(res))

	// Step 2: listeners (local API, health, metrics).
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	servers, err := a.startServers(res.Params, errc, &wg)
	defer func() {
		for _, s := range servers {
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.Shutdown(sctx)
			scancel()
		}
		wg.Wait()
	}()
	if err != nil {
		return err
	}

	// Step 3: the datastore stream.
	src, err := a.newSource(ctx)
	if err != nil {
		return err
	}
	defer src.Stop()

	// Step 4: the loop.
	l := &loop{a: a, calc: calc.New(calc.Config{Hostname: a.cfg.Hostname, InterfacePrefixes: localPrefixes(a.cfg.LocalLayers)}),
		felix: felix, res: res, backoff: a.cfg.RetryMin}
	a.board.update(func(st *Status, _ map[string]string) { st.Config = describe(res) })
	a.board.setRunning(true, time.Now())
	defer a.board.setRunning(false, time.Now())
	err = l.run(ctx, src, errc)
	cancel()
	l.close()
	return err
}

// localPrefixes returns the interface prefixes set by a local layer, so
// calc honours the same precedence the agent resolves.
func localPrefixes(layers []Layer) []string {
	for _, l := range layers {
		if v, ok := l.get(ParamInterfacePrefix); ok {
			p, err := parsePrefixes(v)
			if err == nil {
				return p
			}
			return nil
		}
	}
	return nil
}

func (a *Agent) readFelixConfigs(ctx context.Context) (map[string]*api.FelixConfigurationSpec, error) {
	out := map[string]*api.FelixConfigurationSpec{}
	if a.cfg.Datastore == nil {
		return out, nil
	}
	kind, _ := api.LookupKind(calc.KindFelixConfiguration)
	for _, name := range []string{"default", "node." + a.cfg.Hostname} {
		obj, err := a.cfg.Datastore.Get(ctx, kind, "", name)
		if errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("agent: read FelixConfiguration %s: %w", name, err)
		}
		if fc, ok := obj.(*api.FelixConfiguration); ok {
			spec := fc.Spec
			out[name] = &spec
		}
	}
	return out, nil
}

// resolve merges the local layers with the FelixConfigurations.
func (a *Agent) resolve(felix map[string]*api.FelixConfigurationSpec) (Resolved, error) {
	layers := slices.Clone(a.cfg.LocalLayers)
	node := "node." + a.cfg.Hostname
	layers = append(layers, FelixConfigLayer(node, felix[node]), FelixConfigLayer("default", felix["default"]))
	return Resolve(layers...)
}

func (a *Agent) applyLogLevel(p Params) {
	if a.cfg.LogLevel != nil {
		a.cfg.LogLevel.Set(p.LogSeverityScreen)
	}
}

func (a *Agent) newSource(ctx context.Context) (Source, error) {
	if a.cfg.NewSource != nil {
		return a.cfg.NewSource(ctx)
	}
	var opts datastore.WatchOptions
	for _, k := range WatchedKinds {
		info, ok := api.LookupKind(k)
		if !ok {
			return nil, fmt.Errorf("agent: kind %s is not known to package api", k)
		}
		opts.Kinds = append(opts.Kinds, info)
	}
	w, err := a.cfg.Datastore.Watch(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("agent: watch datastore: %w", err)
	}
	return w, nil
}

// describe renders each parameter's value and source for /v1/status.
func describe(r Resolved) map[string]string {
	p := r.Params
	v := map[string]string{
		ParamInterfacePrefix:             strings.Join(p.InterfacePrefix, ","),
		ParamDefaultEndpointToHostAction: p.DefaultEndpointToHostAction.String(),
		ParamHealthEnabled:               fmt.Sprint(p.HealthEnabled),
		ParamHealthHost:                  p.HealthHost,
		ParamHealthPort:                  fmt.Sprint(p.HealthPort),
		ParamPrometheusMetricsEnabled:    fmt.Sprint(p.PrometheusMetricsEnabled),
		ParamPrometheusMetricsHost:       p.PrometheusMetricsHost,
		ParamPrometheusMetricsPort:       fmt.Sprint(p.PrometheusMetricsPort),
		ParamRouteRefreshInterval:        p.RouteRefreshInterval.String(),
		ParamNftablesRefreshInterval:     p.NftablesRefreshInterval.String(),
		ParamLogSeverityScreen:           p.LogSeverityScreen.String(),
		ParamIptablesMarkMask:            fmt.Sprintf("%#x", p.IptablesMarkMask),
	}
	out := make(map[string]string, len(v))
	for k, val := range v {
		out[k] = val + " (" + r.Sources[k] + ")"
	}
	return out
}

// loop is the state owned by Run's goroutine.
type loop struct {
	a     *Agent
	calc  *calc.Calc
	felix map[string]*api.FelixConfigurationSpec
	res   Resolved

	synced bool
	dirty  bool // calc has changes not yet programmed (or the last apply failed)
	// notReady: ClusterInformation default says datastoreReady: false.
	// Nothing is programmed, resynced or reconciled until it is true again.
	notReady   bool
	felixDirty bool
	rev        int64 // newest datastore revision fed to calc
	// pendingSince is when the agent received (datastore.Update.Received,
	// else when the loop took it) the oldest update after the start of
	// day that is not yet programmed; zero when none is.
	pendingSince time.Time
	backoff      time.Duration
	retryAt      time.Time // no apply before this (after a failure)

	nft       PolicyDataplane
	rt        RouteDataplane
	rtApplied route.Routes // the routes of the last successful route Apply
	// rtEndpoints is the endpoints map rtApplied was computed from.
	rtEndpoints desired.Map[string, desired.Endpoint]
	// boardEndpoints is the endpoints map the status board's workload
	// index was last built from (boardSet: it has been).
	boardEndpoints desired.Map[string, desired.Endpoint]
	boardSet       bool
	rtDone         chan struct{}
	rtStop         context.CancelFunc
	nftTick        *time.Ticker
	rtTick         *time.Ticker
	// settle fires when generic classes are due for chains of their
	// own (Config.SettleDelay); genericSince is when the first of them
	// was programmed (zero: none is); lastApply is when the last apply
	// ended.
	settle                  *time.Timer
	genericSince, lastApply time.Time
}

// settler is the nftables dataplane's generic-class settling
// (*nft.Dataplane).
type settler interface {
	Settle() (bool, error)
	Unsettled() bool
	GenericClasses() int
}

// retainer is a settler that keeps policies that left the state for a
// while (nft.Config.RetainPoliciesFor); RetainedUntil is when the first
// is due for release by a Settle (zero: none retained).
type retainer interface {
	RetainedUntil() time.Time
}

func (l *loop) close() {
	l.stopRouteWatcher()
	if l.nft != nil {
		_ = l.nft.Close()
	}
	if l.rt != nil {
		_ = l.rt.Close()
	}
	for _, t := range []*time.Ticker{l.nftTick, l.rtTick} {
		if t != nil {
			t.Stop()
		}
	}
	if l.settle != nil {
		l.settle.Stop()
	}
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func tickC(t *time.Ticker) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// streamEnded is what Run returns when the datastore stream closes: nil
// when that is because ctx ended (the watch shares it, so its channel can
// close before the loop sees ctx.Done), an error otherwise.
func streamEnded(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("agent: the datastore stream ended")
}

func (l *loop) run(ctx context.Context, src Source, errc <-chan error) error {
	heartbeat := time.NewTicker(5 * time.Second)
	defer heartbeat.Stop()
	var retry *time.Timer
	for {
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case batch, ok := <-src.Updates():
			if !ok {
				return streamEnded(ctx)
			}
			l.feed(batch)
			// Coalesce: take whatever else is already queued before
			// applying once.
			for more := true; more; {
				select {
				case b, ok := <-src.Updates():
					if !ok {
						return streamEnded(ctx)
					}
					l.feed(b)
				default:
					more = false
				}
			}
			if err := l.configChanged(); err != nil {
				return err
			}
		case <-retryC:
			retry = nil
		case <-tickC(l.nftTick):
			if !l.notReady {
				l.resync(dataplaneNft, l.nft)
			}
		case <-tickC(l.rtTick):
			if !l.notReady {
				l.resync(dataplaneRoute, l.rt)
			}
		case <-timerC(l.settle):
			l.settle = nil
			if !l.notReady && !l.dirty {
				l.settleClasses()
			} else {
				// An apply is due (or paused): try again after it.
				l.settle = time.NewTimer(l.a.cfg.SettleDelay)
			}
		case <-heartbeat.C:
		}
		l.a.board.heartbeat(time.Now())
		if l.synced && l.dirty && retry == nil && !l.notReady {
			if wait := time.Until(l.retryAt); wait > 0 {
				retry = time.NewTimer(wait)
				continue
			}
			if err := l.apply(ctx); err != nil {
				var fatal *fatalError
				if errors.As(err, &fatal) {
					return fatal.err
				}
				retry = time.NewTimer(time.Until(l.retryAt))
			}
		}
	}
}

// armSettle (re)starts the settle timer after an apply at now when the
// nftables dataplane has something to settle (generic classes, retained
// policies): SettleDelay from now, but no later than SettleMaxDelay after
// the first apply that left it so.
func (l *loop) armSettle(now time.Time) {
	l.lastApply = now
	unsettled := l.publishUnsettled(0)
	if l.settle != nil {
		l.settle.Stop()
		l.settle = nil
	}
	if !unsettled {
		l.genericSince = time.Time{}
		l.armRetained(now)
		return
	}
	if l.genericSince.IsZero() {
		l.genericSince = now
	}
	due := min(l.a.cfg.SettleDelay, l.genericSince.Add(l.a.cfg.SettleMaxDelay).Sub(now))
	l.settle = time.NewTimer(max(due, 0))
}

// armRetained starts the settle timer for when the first policy the
// nftables dataplane retains is due for release (not sooner than
// SettleDelay), when it retains any.
func (l *loop) armRetained(now time.Time) {
	r, ok := l.nft.(retainer)
	if !ok {
		return
	}
	if until := r.RetainedUntil(); !until.IsZero() {
		l.settle = time.NewTimer(max(until.Sub(now), l.a.cfg.SettleDelay))
	}
}

// publishUnsettled publishes how many generic classes the nftables
// dataplane has (metric) and whether it is unsettled (Status), with the
// duration of a settle that just ran (when non-zero); it returns the
// latter.
func (l *loop) publishUnsettled(settleTook time.Duration) bool {
	st, ok := l.nft.(settler)
	n, unsettled := 0, false
	if ok {
		n, unsettled = st.GenericClasses(), st.Unsettled()
	}
	l.a.m.genericClasses.Set(float64(n))
	l.a.board.update(func(s *Status, _ map[string]string) {
		s.Unsettled = unsettled
		if settleTook > 0 {
			s.LastSettle = settleTook
		}
	})
	return unsettled
}

// settleBatchGap separates settle transactions while classes remain on
// a quiet host, so that updates queued meanwhile are applied between
// them.
const settleBatchGap = 5 * time.Millisecond

// settleClasses gives the generic classes chains of their own. A failure
// is handled like a failed apply: the next apply reads the kernel back.
func (l *loop) settleClasses() {
	st, ok := l.nft.(settler)
	if !ok {
		return
	}
	start := time.Now()
	did, err := st.Settle()
	if err != nil {
		l.a.m.applyErrors.WithLabelValues(dataplaneNft).Inc()
		l.fail(fmt.Errorf("nftables settle: %w", err))
		return
	}
	var took time.Duration
	if did {
		took = time.Since(start)
	}
	unsettled := l.publishUnsettled(took)
	if unsettled {
		// One batch done (nft.Config.SettleBatch). On a quiet host the
		// next follows after any update queued meanwhile. On a busy one
		// (SettleMaxDelay forced the settle) it follows the next apply,
		// whose armSettle finds the settle overdue: the loop has just
		// gone idle then, so a batch seldom delays the change after it,
		// as batches on a timer of their own would. Should no apply
		// come, the host is quiet again after SettleDelay.
		l.settle = time.NewTimer(max(settleBatchGap, time.Until(l.lastApply.Add(l.a.cfg.SettleDelay))))
	} else {
		l.genericSince = time.Time{}
		l.armRetained(time.Now())
	}
	if did {
		l.a.m.settles.Inc()
		l.a.log.Debug("generic classes settled", "took", took)
	}
}

// fatalError ends Run.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// feed gives one batch to calc.
func (l *loop) feed(batch []datastore.Update) {
	start := time.Now()
	m := l.a.m
	wasNotReady, wasSynced := l.notReady, l.synced
	for _, u := range batch {
		if u.Type == datastore.UpdateInSync {
			if !l.synced {
				l.a.log.Info("datastore in sync", "revision", u.Revision)
			}
			l.synced = true
			l.dirty = true
			l.calc.InSync()
			l.rev = max(l.rev, u.Revision)
			m.inSync.Set(1)
			l.a.board.update(func(st *Status, _ map[string]string) {
				st.InSync = true
				st.DatastoreRevision = l.rev
			})
			continue
		}
		m.datastoreUpdates.Inc()
		l.rev = max(l.rev, u.Revision)
		var obj api.Object
		if u.Type == datastore.UpdateSet {
			obj = u.Object
		}
		if u.Err != nil {
			l.a.log.Warn("datastore value does not decode; treated as deleted", "key", u.Key, "err", u.Err)
		}
		if u.Kind == KindClusterInformation {
			if u.Namespace == "" && u.Name == "default" {
				l.notReady = datastoreNotReady(obj)
			}
			continue
		}
		if u.Kind == calc.KindFelixConfiguration && u.Namespace == "" &&
			(u.Name == "default" || u.Name == "node."+l.a.cfg.Hostname) {
			if fc, ok := obj.(*api.FelixConfiguration); ok {
				spec := fc.Spec
				l.felix[u.Name] = &spec
			} else {
				delete(l.felix, u.Name)
			}
			l.felixDirty = true
		}
		if err := l.calc.OnUpdate(calc.Update{Kind: u.Kind, Namespace: u.Namespace, Name: u.Name, Object: obj}); err != nil {
			m.calcRejected.Inc()
			l.a.log.Warn("datastore object not usable; treated as absent", "err", err)
		}
		l.dirty = true
	}
	m.calcBatch.Observe(time.Since(start).Seconds())
	if wasSynced && l.pendingSince.IsZero() {
		// From when the watcher received the change, so that time
		// queued behind a running apply counts.
		l.pendingSince = start
		for _, u := range batch {
			if !u.Received.IsZero() && u.Received.Before(l.pendingSince) {
				l.pendingSince = u.Received
			}
		}
	}
	if l.notReady != wasNotReady {
		l.readyChanged()
	}
	if l.synced {
		rev := l.rev
		l.a.board.update(func(st *Status, _ map[string]string) {
			st.DatastoreRevision = rev
			st.Programmed = false
		})
		m.programmed.Set(0)
	}
}

// datastoreNotReady reports whether obj, the ClusterInformation "default"
// (nil when absent), says datastoreReady: false. Felix stops programming
// then (compat §2, §6.4). An absent object or field counts as ready:
// Brindle's installer does not create a ClusterInformation.
func datastoreNotReady(obj api.Object) bool {
	ci, ok := obj.(*api.ClusterInformation)
	return ok && ci.Spec.DatastoreReady != nil && !*ci.Spec.DatastoreReady
}

// readyChanged follows a change of the datastore-ready flag. Not ready:
// the route link watcher stops and nothing is applied or resynced; the
// kernel keeps what it has. Ready again: the next loop round applies the
// current state (and restarts the watcher).
func (l *loop) readyChanged() {
	if l.notReady {
		l.a.log.Warn("ClusterInformation default has datastoreReady: false; dataplane programming paused")
		l.stopRouteWatcher()
	} else {
		l.a.log.Info("datastore ready again; resuming dataplane programming")
		l.dirty = true
	}
	notReady := l.notReady
	l.a.board.update(func(st *Status, _ map[string]string) { st.DatastoreNotReady = notReady })
	v := 0.0
	if notReady {
		v = 1
	}
	l.a.m.datastoreNotReady.Set(v)
}

// configChanged re-resolves the parameters after a FelixConfiguration
// changed: restart-required changes end Run with ErrRestart; the others
// take effect now.
func (l *loop) configChanged() error {
	if !l.felixDirty {
		return nil
	}
	l.felixDirty = false
	res, err := l.a.resolve(l.felix)
	if err != nil {
		l.a.log.Error("FelixConfiguration change ignored: it does not resolve", "err", err)
		return nil
	}
	if names := RestartNeeded(l.res.Params, res.Params); len(names) > 0 {
		l.a.log.Warn("configuration change needs a restart; exiting", "parameters", names)
		return fmt.Errorf("agent: %s changed: %w", strings.Join(names, ", "), ErrRestart)
	}
	old := l.res.Params
	l.res = res
	l.a.applyLogLevel(res.Params)
	if old.NftablesRefreshInterval != res.Params.NftablesRefreshInterval || old.RouteRefreshInterval != res.Params.RouteRefreshInterval {
		l.startTickers()
	}
	if old.DefaultEndpointToHostAction != res.Params.DefaultEndpointToHostAction {
		l.dirty = true
	}
	l.a.board.update(func(st *Status, _ map[string]string) { st.Config = describe(res) })
	return nil
}

func (l *loop) startTickers() {
	mk := func(t **time.Ticker, d time.Duration) {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
		if d > 0 && l.nft != nil {
			*t = time.NewTicker(d)
		}
	}
	mk(&l.nftTick, l.res.Params.NftablesRefreshInterval)
	mk(&l.rtTick, l.res.Params.RouteRefreshInterval)
}

// state returns calc's state with the agent's resolved config (which
// honours every layer, including the local ones calc does not see).
func (l *loop) state() desired.State {
	s := l.calc.State()
	s.Config = desired.Config{
		InterfacePrefixes:           slices.Clone(l.res.Params.InterfacePrefix),
		DefaultEndpointToHostAction: l.res.Params.DefaultEndpointToHostAction,
	}
	return s
}

// apply programs the current desired state into both dataplanes. On
// failure it sets the retry time and returns the error.
func (l *loop) apply(ctx context.Context) error {
	a, m := l.a, l.a.m
	start := time.Now()
	if l.nft == nil {
		if err := l.openDataplanes(); err != nil {
			return err
		}
	}
	if l.rtStop == nil {
		l.startRouteWatcher(ctx)
	}
	m.applies.Inc()
	rev := l.rev
	s := l.state()
	var errs []error
	if err := l.nft.Apply(&s); err != nil {
		m.applyErrors.WithLabelValues(dataplaneNft).Inc()
		errs = append(errs, fmt.Errorf("nftables: %w", err))
	}
	// Routes depend only on local endpoints' interfaces and addresses; a
	// policy or label change leaves them alone, so the route dataplane's
	// full read-back is skipped then (link events and the periodic resync
	// still repair drift). Only the endpoints changed since the routes
	// were computed are looked at (Map.Diff: none when calc handed out the
	// same map, a remote label change).
	sameIPs := func(a, b desired.Endpoint) bool { return slices.Equal(a.IPs, b.IPs) }
	// rtEndpoints follows every apply (the routes of the endpoints the
	// Diff found unchanged are still right), so the next Diff looks only
	// at what changed since this one.
	if l.rtApplied == nil || anyKey(s.Endpoints.Diff(l.rtEndpoints, sameIPs)) {
		if rs := route.Routes(calc.Routes(&s)); l.rtApplied == nil || !routesEqual(rs, l.rtApplied) {
			if err := l.rt.Apply(rs); err != nil {
				m.applyErrors.WithLabelValues(dataplaneRoute).Inc()
				errs = append(errs, fmt.Errorf("routes: %w", err))
				l.rtApplied = nil
			} else {
				l.rtApplied = rs
			}
		}
	}
	l.rtEndpoints = s.Endpoints
	m.applyDuration.Observe(time.Since(start).Seconds())
	if err := errors.Join(errs...); err != nil {
		l.fail(err)
		return err
	}
	l.dirty = false
	l.backoff = a.cfg.RetryMin
	l.retryAt = time.Time{}
	// The workload → interface index of the status board changes only
	// with an endpoint's interface or workload.
	sameWorkload := func(a, b desired.Endpoint) bool { return a.WorkloadID == b.WorkloadID }
	var eps map[string]string
	if !l.boardSet || anyKey(s.Endpoints.Diff(l.boardEndpoints, sameWorkload)) {
		eps = make(map[string]string, s.Endpoints.Len())
		for iface, ep := range s.Endpoints.All() {
			eps[ep.WorkloadID] = iface
		}
	}
	l.boardEndpoints, l.boardSet = s.Endpoints, true
	m.localEndpoints.Set(float64(s.Endpoints.Len()))
	m.activePolicies.Set(float64(s.Policies.Len()))
	m.activeProfiles.Set(float64(s.Profiles.Len()))
	m.ipSets.Set(float64(s.IPSets.Len()))
	m.programmed.Set(1)
	now := time.Now()
	var lag time.Duration
	if !l.pendingSince.IsZero() {
		lag = now.Sub(l.pendingSince)
		m.updateToProgrammed.Observe(lag.Seconds())
		l.pendingSince = time.Time{}
	}
	a.board.update(func(st *Status, e map[string]string) {
		if lag > 0 {
			st.LastUpdateToProgrammed = lag
		}
		st.Programmed = true
		st.ProgrammedRevision = rev
		st.LocalEndpoints, st.ActivePolicies, st.ActiveProfiles, st.IPSets = s.Endpoints.Len(), s.Policies.Len(), s.Profiles.Len(), s.IPSets.Len()
		st.Applies++
		st.LastApplyError = ""
		st.LastProgrammed = now
		if eps != nil {
			clear(e)
			maps.Copy(e, eps)
		}
	})
	l.armSettle(now)
	a.log.Debug("applied", "revision", rev, "endpoints", s.Endpoints.Len(), "policies", s.Policies.Len(),
		"ipsets", s.IPSets.Len(), "took", time.Since(start))
	return nil
}

// fail records a failed apply and schedules the retry with backoff.
func (l *loop) fail(err error) {
	a := l.a
	l.dirty = true
	l.retryAt = time.Now().Add(l.backoff)
	a.log.Error("apply failed; retrying", "err", err, "in", l.backoff)
	l.backoff = min(2*l.backoff, a.cfg.RetryMax)
	a.m.programmed.Set(0)
	a.board.update(func(st *Status, _ map[string]string) {
		st.Programmed = false
		st.Applies++
		st.ApplyErrors++
		st.LastApplyError = err.Error()
	})
}

// openDataplanes creates the dataplanes at the first apply, once the
// interface prefixes are known.
func (l *loop) openDataplanes() error {
	newDP := l.a.cfg.NewDataplanes
	if newDP == nil {
		newDP = realDataplanes(l.a.cfg.Netns, l.a.cfg.Nft, l.a.log)
	}
	nftDP, rtDP, err := newDP(l.res.Params)
	if err != nil {
		err = fmt.Errorf("open dataplanes: %w", err)
		l.a.m.applyErrors.WithLabelValues(dataplaneNft).Inc()
		l.fail(err)
		return err
	}
	l.nft, l.rt = nftDP, rtDP
	l.startTickers()
	return nil
}

// startRouteWatcher runs the route dataplane's link watcher (if it has
// one) until stopRouteWatcher.
func (l *loop) startRouteWatcher(ctx context.Context) {
	r, ok := l.rt.(interface{ Run(context.Context) error })
	if !ok {
		return
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	l.rtStop, l.rtDone = stop, done
	go func() {
		defer close(done)
		if err := r.Run(rctx); err != nil {
			l.a.log.Error("route link watcher stopped", "err", err)
		}
	}()
}

// stopRouteWatcher stops the link watcher and waits for it to end.
func (l *loop) stopRouteWatcher() {
	if l.rtStop != nil {
		l.rtStop()
		<-l.rtDone
		l.rtStop, l.rtDone = nil, nil
	}
}

// resync reads one dataplane back and repairs drift.
func (l *loop) resync(name string, dp interface{ Resync() error }) {
	if dp == nil {
		return
	}
	l.a.m.resyncs.WithLabelValues(name).Inc()
	l.a.board.update(func(st *Status, _ map[string]string) { st.Resyncs++ })
	if err := dp.Resync(); err != nil {
		l.a.m.resyncErrors.WithLabelValues(name).Inc()
		l.a.log.Error("resync failed; reapplying", "dataplane", name, "err", err)
		l.dirty = true
		if name == dataplaneRoute {
			l.rtApplied = nil // the next apply applies the routes whole
		}
	}
}

// Handler returns the local API (see docs/agent.md): GET /v1/status,
// GET /v1/endpoints/{namespace}/{name}/ready, /livez, /readyz and /metrics.
func (a *Agent) Handler() http.Handler { return a.mux(true, true) }

func routesEqual(a, b route.Routes) bool {
	return maps.EqualFunc(a, b, func(x, y []netip.Prefix) bool { return slices.Equal(x, y) })
}

// anyKey reports whether keys yields anything.
func anyKey[K any](keys iter.Seq[K]) bool {
	for range keys {
		return true
	}
	return false
}
