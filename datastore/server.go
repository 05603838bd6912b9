package datastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ServerConfig configures an embedded single-member etcd.
type ServerConfig struct {
	// Name of the member. Default "brindle".
	Name string
	// DataDir holds the member's data (required).
	DataDir string
	// ClientURL is where clients connect. Default DefaultEndpoint.
	ClientURL string
	// PeerURL is the raft peer address (unused by a single member, but etcd
	// binds it). Default http://127.0.0.1:2380.
	PeerURL string
	// MaxTxnOps and MaxRequestBytes raise etcd's per-request limits; zero
	// keeps etcd's defaults (128 ops, 1.5 MiB).
	MaxTxnOps       uint
	MaxRequestBytes uint
	// AutoCompactionRetention, when non-zero, compacts history older than
	// this periodically. Default off.
	AutoCompactionRetention time.Duration
	// UnsafeNoFsync skips fsync: only for tests and benchmarks.
	UnsafeNoFsync bool
	// StartTimeout bounds waiting for the member to be ready. Default 60s.
	StartTimeout time.Duration
	// Logger receives etcd's errors. Default: discard.
	Logger *slog.Logger
}

// DefaultPeerURL is the embedded member's default peer URL.
const DefaultPeerURL = "http://127.0.0.1:2380"

// Validate checks the configuration.
func (c ServerConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("data dir: required")
	}
	for _, u := range []struct{ name, v string }{{"client URL", c.ClientURL}, {"peer URL", c.PeerURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
			return fmt.Errorf("%s %q: not a URL like http://127.0.0.1:2379", u.name, u.v)
		}
	}
	return nil
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
	level     zap.AtomicLevel // of etcd's logger
}

// StartServer starts a member and waits until it serves clients.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = "brindle"
	}
	if cfg.ClientURL == "" {
		cfg.ClientURL = DefaultEndpoint
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = DefaultPeerURL
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	curl, _ := url.Parse(cfg.ClientURL)
	purl, _ := url.Parse(cfg.PeerURL)

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*curl}
	ec.AdvertiseClientUrls = []url.URL{*curl}
	ec.ListenPeerUrls = []url.URL{*purl}
	ec.AdvertisePeerUrls = []url.URL{*purl}
	ec.InitialCluster = cfg.Name + "=" + purl.String()
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "0"
	if cfg.AutoCompactionRetention > 0 {
		ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	}
	if cfg.MaxTxnOps > 0 {
		ec.MaxTxnOps = cfg.MaxTxnOps
	}
	if cfg.MaxRequestBytes > 0 {
		ec.MaxRequestBytes = cfg.MaxRequestBytes
	}
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// etcd warns about things a single loopback member does on purpose
	// (one port for gRPC and HTTP, simple tokens): errors only.
	level := zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(logger, level))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd (client %s, peer %s, data %s): %w", cfg.ClientURL, cfg.PeerURL, cfg.DataDir, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready after %s", cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Server{etcd: e, clientURL: cfg.ClientURL, level: level}, nil
}

// Endpoint returns the client URL.
func (s *Server) Endpoint() string { return s.clientURL }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member cleanly (in-flight requests finish, data is
// synced). It is safe to call more than once.
func (s *Server) Close() {
	// Closing listeners makes etcd log "use of closed network connection"
	// errors: expected during a shutdown, so not logged.
	s.level.SetLevel(zapcore.FatalLevel)
	s.etcd.Close()
}

// FreeLoopbackPorts returns n distinct TCP ports on 127.0.0.1 that were
// free a moment ago. etcd cannot bind port 0 for its peer listener, so a
// caller picks ports this way and retries StartServer if one was taken in
// between.
func FreeLoopbackPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// LoopbackURL is http://127.0.0.1:<port>.
func LoopbackURL(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }
