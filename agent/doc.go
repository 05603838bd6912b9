// Package agent is the per-host agent: one loop that feeds datastore
// updates to calc and programs the result into the nftables and route
// dataplanes, plus health, metrics and a local API on a unix socket.
//
// Contract (docs/agent.md has the details):
//
//   - One goroutine (Run) owns calc and the dataplanes. Other goroutines
//     read what it publishes (Status, WaitProgrammed, WaitEndpoint, the
//     HTTP handlers) under one mutex.
//   - Nothing in the kernel is touched before the datastore is in sync:
//     the dataplanes are opened at the first apply, after UpdateInSync, and
//     that first apply sweeps whatever of ours is not desired. A restarted
//     agent therefore leaves the previous ruleset and routes in place until
//     it has the whole datastore.
//   - Batching: after each watch batch the loop takes every batch already
//     queued, then applies once; changes arriving during an apply are
//     coalesced into the next one.
//   - A failed apply is counted, logged and retried with exponential
//     backoff (RetryMin..RetryMax) until it succeeds; /readyz is 503 while
//     it fails. Periodic resyncs (NftablesRefreshInterval,
//     RouteRefreshInterval) read each dataplane back and repair drift.
//   - Configuration: Params resolved from the local layers (flags,
//     environment, config file), then FelixConfiguration node.<hostname>,
//     then default, then built-in defaults (compat §6.4). A datastore change
//     to a restart-required parameter makes Run return ErrRestart; the
//     others apply live.
package agent
