package agent

import (
	"context"
	"maps"
	"sync"
	"time"
)

// Status is what the agent reports on GET /v1/status.
type Status struct {
	Hostname string `json:"hostname"`
	// InSync: the datastore snapshot has been received.
	InSync bool `json:"inSync"`
	// DatastoreNotReady: ClusterInformation default says datastoreReady:
	// false, so the agent programs nothing until it is true again.
	DatastoreNotReady bool `json:"datastoreNotReady,omitempty"`
	// Programmed: in sync, the last apply succeeded and no change is
	// waiting to be applied.
	Programmed bool `json:"programmed"`
	// DatastoreRevision is the newest datastore revision fed to the
	// calculation; ProgrammedRevision the newest one whose effect is in
	// the kernel.
	DatastoreRevision  int64 `json:"datastoreRevision"`
	ProgrammedRevision int64 `json:"programmedRevision"`
	// Counts in the programmed state.
	LocalEndpoints int `json:"localEndpoints"`
	ActivePolicies int `json:"activePolicies"`
	ActiveProfiles int `json:"activeProfiles"`
	IPSets         int `json:"ipSets"`
	// Unsettled: the nftables dataplane has classes running through its
	// generic chains, or policies kept only for them, until the next
	// settle (docs/agent.md).
	Unsettled bool `json:"unsettled,omitempty"`
	// LastSettle is how long the last settle that had something to do
	// took (nanoseconds in JSON); the loop programs nothing meanwhile.
	LastSettle time.Duration `json:"lastSettle,omitempty"`
	// Counters since start.
	Applies        uint64 `json:"applies"`
	ApplyErrors    uint64 `json:"applyErrors"`
	Resyncs        uint64 `json:"resyncs"`
	LastApplyError string `json:"lastApplyError,omitempty"`
	// LastProgrammed is when the last successful apply finished.
	LastProgrammed time.Time `json:"lastProgrammed,omitzero"`
	// LastUpdateToProgrammed is, for the last apply that followed a
	// datastore change after the start of day, the time from the agent
	// receiving the oldest change it programmed to the kernel having it
	// (nanoseconds in JSON).
	LastUpdateToProgrammed time.Duration `json:"lastUpdateToProgrammed,omitempty"`
	// Config is each parameter's value and where it came from.
	Config map[string]string `json:"config,omitempty"`
}

// board is the state the loop publishes for readers (HTTP handlers,
// tests). The loop writes; anyone reads.
type board struct {
	mu sync.Mutex // guards every field below
	st Status
	// endpoints maps the workload ID ("namespace/name") of every endpoint
	// in the programmed state to its interface.
	endpoints map[string]string
	// changed is closed (and replaced) on every publish.
	changed  chan struct{}
	running  bool
	lastLoop time.Time
}

func newBoard(hostname string) *board {
	return &board{st: Status{Hostname: hostname}, endpoints: map[string]string{}, changed: make(chan struct{})}
}

// update changes the status under the lock and wakes every waiter.
func (b *board) update(fn func(st *Status, eps map[string]string)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(&b.st, b.endpoints)
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *board) status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.Config = maps.Clone(b.st.Config)
	return st
}

func (b *board) heartbeat(now time.Time) {
	b.mu.Lock()
	b.lastLoop = now
	b.mu.Unlock()
}

func (b *board) setRunning(r bool, now time.Time) {
	b.mu.Lock()
	b.running, b.lastLoop = r, now
	b.mu.Unlock()
}

// live: the loop is running and went round within timeout.
func (b *board) live(now time.Time, timeout time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running && now.Sub(b.lastLoop) < timeout
}

// EndpointReady is the answer to an endpoint readiness wait.
type EndpointReady struct {
	Ready              bool   `json:"ready"`
	Interface          string `json:"interface,omitempty"`
	ProgrammedRevision int64  `json:"programmedRevision"`
	Reason             string `json:"reason,omitempty"`
}

// waitEndpoint blocks until the endpoint id is in the programmed state at
// a revision of at least minRev, or ctx ends.
func (b *board) waitEndpoint(ctx context.Context, id string, minRev int64) EndpointReady {
	for {
		b.mu.Lock()
		iface, ok := b.endpoints[id]
		r := EndpointReady{Ready: ok && b.st.ProgrammedRevision >= minRev, Interface: iface,
			ProgrammedRevision: b.st.ProgrammedRevision}
		ch := b.changed
		switch {
		case r.Ready:
		case !b.st.InSync:
			r.Reason = "the agent is not in sync with the datastore yet"
		case !ok:
			r.Reason = "no local endpoint " + id + " is programmed"
		default:
			r.Reason = "the programmed state is older than the requested revision"
		}
		b.mu.Unlock()
		if r.Ready {
			return r
		}
		select {
		case <-ctx.Done():
			return r
		case <-ch:
		}
	}
}

// waitProgrammed blocks until the programmed revision is at least rev
// (and the dataplane is programmed), or ctx ends; it reports success.
func (b *board) waitProgrammed(ctx context.Context, rev int64) bool {
	for {
		b.mu.Lock()
		ok := b.st.Programmed && b.st.ProgrammedRevision >= rev
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}
