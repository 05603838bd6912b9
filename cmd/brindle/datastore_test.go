package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/brindle-net/brindle/datastore"
)

// TestRunDatastoreServesAndStops starts the member the way `brindle
// datastore` does, writes through a client, and checks a cancelled context
// (what SIGTERM does) shuts it down cleanly and keeps the data.
func TestRunDatastoreServesAndStops(t *testing.T) {
	ports, err := datastore.FreeLoopbackPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := datastore.ServerConfig{
		DataDir:       t.TempDir(),
		ClientURL:     datastore.LoopbackURL(ports[0]),
		PeerURL:       datastore.LoopbackURL(ports[1]),
		UnsafeNoFsync: true,
	}
	logger := slog.New(slog.DiscardHandler)
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runDatastore(ctx, cfg, logger) }()
		var c *datastore.Client
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err = datastore.New(ctx, datastore.Config{Endpoints: []string{cfg.ClientURL}, DialTimeout: 500 * time.Millisecond})
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("round %d: member never served: %v", round, err)
		}
		raw := c.Raw()
		if round == 0 {
			if _, err := raw.Create(ctx, "/calico/test", []byte("kept")); err != nil {
				t.Fatal(err)
			}
		} else if kv, err := raw.Get(ctx, "/calico/test"); err != nil || string(kv.Value) != "kept" {
			t.Fatalf("after restart: %q, %v; want the value written before", kv.Value, err)
		}
		c.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: shutdown: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: member did not stop", round)
		}
	}
}
