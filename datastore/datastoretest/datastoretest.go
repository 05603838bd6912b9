// Package datastoretest starts a real embedded etcd member for tests: a
// fresh member on random loopback ports with its own data directory, and a
// connected datastore client, both removed when the test ends.
package datastoretest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/datastore"
)

// Options tune the member. The zero value is what most tests want.
type Options struct {
	// MaxTxnOps raises etcd's per-transaction op limit (default 128).
	MaxTxnOps uint
	// Fsync makes the member fsync like a production one; by default tests
	// skip fsync for speed.
	Fsync bool
	// ClientConfig is the starting point of the client's configuration;
	// Endpoints is filled in.
	ClientConfig datastore.Config
	// Separate runs the member in a child process, as production runs
	// etcd apart from brindle node: its memory, garbage collection and
	// goroutines then stay out of the test's process (benchmarks of the
	// agent use it). The test binary's TestMain must call ServeIfChild.
	// Stop and Restart are not available.
	Separate bool
}

// Member is a running test member and a client connected to it.
type Member struct {
	// Client is connected to the member and closed at cleanup.
	Client *datastore.Client
	// Endpoints are the member's client URLs.
	Endpoints []string
	// DataDir is the member's data directory.
	DataDir string

	t        testing.TB
	cfg      datastore.ServerConfig
	server   *datastore.Server
	separate bool
	pid      int
}

// New starts a member with default options. See NewWith.
func New(t testing.TB) *Member { return NewWith(t, Options{}) }

// NewWith starts a member, retrying on another pair of ports if one was
// taken in the meantime, and connects a client. Both are shut down and the
// data directory removed when the test ends.
func NewWith(t testing.TB, opts Options) *Member {
	t.Helper()
	m := &Member{t: t, DataDir: t.TempDir(), separate: opts.Separate}
	m.cfg = datastore.ServerConfig{
		Name:          "test",
		DataDir:       m.DataDir,
		MaxTxnOps:     opts.MaxTxnOps,
		UnsafeNoFsync: !opts.Fsync,
		StartTimeout:  30 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := datastore.FreeLoopbackPorts(2)
		if err != nil {
			t.Fatal(err)
		}
		m.cfg.ClientURL = datastore.LoopbackURL(ports[0])
		m.cfg.PeerURL = datastore.LoopbackURL(ports[1])
		if opts.Separate {
			lastErr = m.startChild(t)
		} else {
			m.server, lastErr = datastore.StartServer(context.Background(), m.cfg)
		}
		if lastErr == nil {
			break
		}
		if !strings.Contains(lastErr.Error(), "address already in use") {
			t.Fatalf("starting etcd: %v", lastErr)
		}
	}
	if lastErr != nil {
		t.Fatalf("starting etcd: %v", lastErr)
	}
	t.Cleanup(m.stop)
	m.Endpoints = []string{m.cfg.ClientURL}
	cc := opts.ClientConfig
	cc.Endpoints = m.Endpoints
	c, err := datastore.New(context.Background(), cc)
	if err != nil {
		t.Fatalf("connecting to etcd: %v", err)
	}
	m.Client = c
	t.Cleanup(func() { c.Close() })
	return m
}

// Connect opens another client to the member, closed at cleanup.
func (m *Member) Connect(cfg datastore.Config) *datastore.Client {
	m.t.Helper()
	cfg.Endpoints = m.Endpoints
	c, err := datastore.New(context.Background(), cfg)
	if err != nil {
		m.t.Fatalf("connecting to etcd: %v", err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// Stop shuts the member down (clients stay open and start failing or
// retrying). Restart brings it back on the same ports and data.
func (m *Member) Stop() {
	if m.separate {
		m.t.Fatal("datastoretest: Stop is not available with Options.Separate")
	}
	m.stop()
}

func (m *Member) stop() {
	if m.server != nil {
		m.server.Close()
		m.server = nil
	}
}

// Restart starts the member again on the same ports and data directory.
func (m *Member) Restart() {
	m.t.Helper()
	if m.separate {
		m.t.Fatal("datastoretest: Restart is not available with Options.Separate")
	}
	m.stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		m.server, err = datastore.StartServer(context.Background(), m.cfg)
		if err == nil {
			return
		}
		// The old listeners can take a moment to be released.
		time.Sleep(100 * time.Millisecond)
	}
	m.t.Fatalf("restarting etcd: %v", err)
}
