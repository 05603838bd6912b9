package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/brindle-net/brindle/datastore"
	"github.com/spf13/cobra"
)

// DefaultDataDir is where `brindle datastore` keeps etcd's data.
const DefaultDataDir = "/var/lib/brindle/etcd"

// newDatastoreCommand is `brindle datastore`: one embedded etcd member.
func newDatastoreCommand(logger *slog.Logger) *cobra.Command {
	cfg := datastore.ServerConfig{}
	var compaction time.Duration
	cmd := &cobra.Command{
		Use:   "datastore",
		Short: "Run the datastore: a single embedded etcd member",
		Long: `Run one etcd member that serves Brindle's datastore. Clients (brindlectl,
agents) connect to --listen-client-url. SIGTERM or SIGINT shut it down
cleanly: in-flight requests finish and the data is synced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.AutoCompactionRetention = compaction
			cfg.Logger = logger
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runDatastore(ctx, cfg, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", DefaultDataDir, "directory for etcd's data")
	f.StringVar(&cfg.ClientURL, "listen-client-url", datastore.DefaultEndpoint, "URL clients connect to")
	f.StringVar(&cfg.PeerURL, "listen-peer-url", datastore.DefaultPeerURL, "raft peer URL (bound even for a single member)")
	f.StringVar(&cfg.Name, "name", "brindle", "member name")
	f.UintVar(&cfg.MaxTxnOps, "max-txn-ops", 0, "largest transaction in operations (0: etcd's default, 128)")
	f.UintVar(&cfg.MaxRequestBytes, "max-request-bytes", 0, "largest request in bytes (0: etcd's default, 1.5 MiB)")
	f.DurationVar(&compaction, "auto-compaction-retention", 0, "compact history older than this (0: never)")
	return cmd
}

// runDatastore starts the member, waits for ctx to end or the member to
// fail, and shuts it down.
func runDatastore(ctx context.Context, cfg datastore.ServerConfig, logger *slog.Logger) error {
	srv, err := datastore.StartServer(ctx, cfg)
	if err != nil {
		return err
	}
	logger.Info("datastore ready", "client-url", srv.Endpoint(), "data-dir", cfg.DataDir)
	select {
	case <-ctx.Done():
		logger.Info("datastore shutting down")
		srv.Close()
		logger.Info("datastore stopped")
		return nil
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("datastore failed: %w", err)
	}
}
