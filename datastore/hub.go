package datastore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Hub shares one watch among many consumers of one process, as Typha does
// between hosts: one etcd watch and one decode per change, a cache of the
// current value of every key, and any number of subscribers.
//
// Each subscriber is a *Watcher with the same stream as Client.Watch: a
// snapshot (taken from the cache, in key order), one UpdateInSync, then
// every change in revision order. Subscribers have their own unbounded
// queue, filled without blocking while the hub holds its lock, so a slow
// subscriber gets every update in bigger batches and never delays the hub
// or the other subscribers; the cost of a slow subscriber is its queue's
// memory.
//
// Objects (Update.Object) and raw values (Update.Value) are shared by the
// cache and every subscriber: they are read-only. A subscriber that needs
// to modify one must copy it (e.g. with DeepCopyObject). The batches
// themselves ([]Update) are each subscriber's own.
//
// The hub follows etcd like a Watcher: it resumes after a dropped
// connection, and after a compaction it lists again and fans out just the
// difference, so every subscriber's view stays exact.
type Hub struct {
	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	done   chan struct{} // closed when the producer has exited

	kinds map[string]bool // served kinds, by Kind name
	raw   []string        // served raw prefixes

	// mu guards the fields below. Lock order: Hub.mu, then a
	// subscriber's Watcher.mu.
	mu     sync.Mutex
	cache  map[string]Update // current value of every key, Type UpdateSet
	rev    int64             // highest revision fanned out so far
	synced bool              // the initial snapshot is complete
	subs   map[*Watcher]*filter
}

// filter picks a subscriber's updates out of the hub's stream; nil passes
// everything.
type filter struct {
	kinds map[string]bool // by Kind name
	raw   []string
}

func (f *filter) match(u *Update) bool {
	switch {
	case f == nil || u.Type == UpdateInSync:
		return true
	case u.Kind != "":
		return f.kinds[u.Kind]
	}
	return hasAnyPrefix(u.Key, f.raw)
}

// NewHub starts a hub serving the kinds and raw prefixes of opts. It
// returns at once; subscribers may join before the first snapshot is
// complete. Stop it (or cancel ctx) to end it and every subscription.
func (c *Client) NewHub(ctx context.Context, opts WatchOptions) (*Hub, error) {
	if len(opts.Kinds) == 0 && len(opts.RawPrefixes) == 0 {
		return nil, errors.New("hub: no kinds or prefixes given")
	}
	s, err := newWatchState(c, opts)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Hub{
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		kinds:  map[string]bool{},
		raw:    append([]string(nil), opts.RawPrefixes...),
		cache:  map[string]Update{},
		subs:   map[*Watcher]*filter{},
	}
	for _, k := range opts.Kinds {
		h.kinds[k.Kind] = true
	}
	s.sink = h
	go func() {
		defer close(h.done)
		s.run(ctx)
	}()
	return h, nil
}

// Stop ends the hub's etcd watch and every subscription (their Updates
// channels close), and waits for the hub's producer to exit.
func (h *Hub) Stop() {
	h.cancel()
	<-h.done
}

// Subscribe adds a subscriber. opts chooses a subset of what the hub
// serves: kinds among the hub's kinds, raw prefixes inside one of the hub's
// raw prefixes; empty opts is everything the hub serves. The subscriber
// first receives the current contents of the cache, then follows the
// hub's stream. It ends with Stop on the Watcher, when ctx is cancelled or
// when the hub stops.
func (h *Hub) Subscribe(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	f, err := h.filterFor(opts)
	if err != nil {
		return nil, err
	}
	if h.ctx.Err() != nil {
		return nil, errors.New("hub: stopped")
	}
	sctx, cancel := context.WithCancel(ctx)
	stopWithHub := context.AfterFunc(h.ctx, cancel)
	w := newWatcher(cancel)

	// Copy the matching part of the cache and register, atomically with
	// respect to the hub's batches; sort outside the hub's lock. Later
	// batches queue up behind the snapshot, since the pump has not
	// started yet.
	h.mu.Lock()
	snap := make([]Update, 0, len(h.cache))
	for _, u := range h.cache {
		if f.match(&u) {
			snap = append(snap, u)
		}
	}
	synced, rev := h.synced, h.rev
	h.subs[w] = f
	h.mu.Unlock()
	snap = sortedByKey(snap)
	if synced {
		snap = append(snap, Update{Type: UpdateInSync, Revision: rev})
	}
	w.mu.Lock()
	w.queue = append(snap, w.queue...)
	w.mu.Unlock()
	w.push() // wake the pump

	var wg sync.WaitGroup
	wg.Go(func() { w.pump(sctx) })
	wg.Go(func() {
		<-sctx.Done()
		stopWithHub()
		h.mu.Lock()
		delete(h.subs, w)
		h.mu.Unlock()
	})
	go func() { wg.Wait(); close(w.done) }()
	return w, nil
}

// sortedByKey returns us in key order (sorting indexes, not the updates).
func sortedByKey(us []Update) []Update {
	order := make([]int32, len(us))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(us[a].Key, us[b].Key) })
	out := make([]Update, len(us), len(us)+1)
	for i, j := range order {
		out[i] = us[j]
	}
	return out
}

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// filterFor checks that opts asks for a subset of what the hub serves.
func (h *Hub) filterFor(opts WatchOptions) (*filter, error) {
	if len(opts.Kinds) == 0 && len(opts.RawPrefixes) == 0 {
		return nil, nil
	}
	f := &filter{kinds: map[string]bool{}}
	for _, k := range opts.Kinds {
		if !h.kinds[k.Kind] {
			return nil, fmt.Errorf("hub: subscribe: kind %q is not served by this hub", k.Kind)
		}
		f.kinds[k.Kind] = true
	}
	for _, p := range opts.RawPrefixes {
		if p == "" {
			return nil, errors.New("hub: subscribe: empty raw prefix")
		}
		if !hasAnyPrefix(p, h.raw) {
			return nil, fmt.Errorf("hub: subscribe: raw prefix %q is not inside one this hub serves (%s)", p, strings.Join(h.raw, ", "))
		}
		f.raw = append(f.raw, p)
	}
	return f, nil
}

// push applies a batch from the producer to the cache and queues it for
// every subscriber that wants it. It never blocks on a subscriber.
func (h *Hub) push(us ...Update) {
	if len(us) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range us {
		u := &us[i]
		switch u.Type {
		case UpdateInSync:
			h.synced = true
		case UpdateSet:
			c := *u
			c.Received = time.Time{} // a later subscriber's snapshot is not a change
			h.cache[u.Key] = c
		case UpdateDelete:
			delete(h.cache, u.Key)
		}
		h.rev = max(h.rev, u.Revision)
	}
	var mine []Update
	for w, f := range h.subs {
		if f == nil {
			w.push(us...)
			continue
		}
		mine = mine[:0]
		for i := range us {
			if f.match(&us[i]) {
				mine = append(mine, us[i])
			}
		}
		w.push(mine...)
	}
}

// Compile-time check that both consumers of a watchState are sinks.
var (
	_ sink = (*Hub)(nil)
	_ sink = (*Watcher)(nil)
)
