package datastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultEndpoint is where the embedded member (brindle datastore) serves
// clients unless told otherwise.
const DefaultEndpoint = "http://127.0.0.1:2379"

// Defaults of an etcd cluster's per-request limits (--max-txn-ops and
// --max-request-bytes). Batches are cut to fit them.
const (
	DefaultMaxTxnOps = 128
	// DefaultMaxTxnBytes leaves headroom under etcd's 1.5 MiB request limit
	// for the request's own framing and compares.
	DefaultMaxTxnBytes = 1024 * 1024
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are client URLs, e.g. https://10.0.0.1:2379. Default
	// [DefaultEndpoint].
	Endpoints []string
	// CAFile, CertFile and KeyFile configure TLS: the CA that signed the
	// servers' certificates and the client's own certificate and key.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to an etcd with auth enabled.
	Username, Password string
	// DialTimeout bounds connecting and the reachability check. Default 5s.
	DialTimeout time.Duration
	// MaxTxnOps and MaxTxnBytes are the largest transaction the cluster
	// accepts. Defaults DefaultMaxTxnOps and DefaultMaxTxnBytes, which suit
	// an etcd with default flags.
	MaxTxnOps   int
	MaxTxnBytes int
	// Logger receives etcd's client errors and the datastore's own
	// warnings (e.g. values that fail to decode). Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with empty fields defaulted.
func (c Config) withDefaults() Config {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultEndpoint}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.MaxTxnBytes == 0 {
		c.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	c = c.withDefaults()
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") {
			return fmt.Errorf("endpoints[%d]: %q is not a URL like http://127.0.0.1:2379", i, ep)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("a client certificate and key must be given together")
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("a password needs a username")
	}
	if c.MaxTxnOps < 2 {
		return fmt.Errorf("max txn ops %d: must be at least 2", c.MaxTxnOps)
	}
	if c.MaxTxnBytes < 1024 {
		return fmt.Errorf("max txn bytes %d: must be at least 1024", c.MaxTxnBytes)
	}
	return nil
}

// Client is a connection to the datastore. It is safe for concurrent use.
type Client struct {
	etcd *clientv3.Client
	cfg  Config
	log  *slog.Logger

	// beforeChunk, when set (by tests), runs before each write transaction
	// of a chunked batch, with the chunk's index.
	beforeChunk func(chunk int) error
	// afterRead, when set (by tests), runs between a plan's read and its
	// decisions.
	afterRead func()
	// beforeWatch, when set (by tests), runs before a watcher opens an etcd
	// watch from revision rev+1.
	beforeWatch func(rev int64)
}

// New connects to etcd and checks that at least one endpoint answers. The
// error names the endpoints that could not be reached.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("datastore config: %w", err)
	}
	cfg = cfg.withDefaults()
	ec := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zapToSlog(cfg.Logger, zap.NewAtomicLevelAt(zapcore.ErrorLevel)),
		// Resumed watches and big snapshots are allowed to be large.
		MaxCallRecvMsgSize: 512 << 20,
	}
	if cfg.CAFile != "" || cfg.CertFile != "" || hasTLSEndpoint(cfg.Endpoints) {
		tlsInfo := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS config: %w", err)
		}
		ec.TLS = tc
	}
	cli, err := clientv3.New(ec)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	c := &Client{etcd: cli, cfg: cfg, log: cfg.Logger}
	if err := c.checkReachable(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	return c, nil
}

func hasTLSEndpoint(eps []string) bool {
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			return true
		}
	}
	return false
}

// checkReachable asks every endpoint for its status; one answer is enough.
func (c *Client) checkReachable(ctx context.Context) error {
	var errs []error
	for _, ep := range c.cfg.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
		_, err := c.etcd.Status(sctx, ep)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return fmt.Errorf("cannot reach etcd: %w", errors.Join(errs...))
}

// Close releases the connection. Watches started from the client end.
func (c *Client) Close() error { return c.etcd.Close() }

// Endpoints returns the endpoints the client was configured with.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// Compact discards history up to rev (inclusive of everything older). Used
// by tests and operators; watches that were behind rev re-list.
func (c *Client) Compact(ctx context.Context, rev int64) error {
	_, err := c.etcd.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if err != nil {
		return fmt.Errorf("compacting to revision %d: %w", rev, err)
	}
	return nil
}

// Revision returns the store's current revision.
func (c *Client) Revision(ctx context.Context) (int64, error) {
	resp, err := c.etcd.Get(ctx, "/calico/", clientv3.WithCountOnly(), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("reading revision: %w", err)
	}
	return resp.Header.Revision, nil
}
