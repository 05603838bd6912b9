package datastore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/brindle-net/brindle/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// UpdateType says what an Update means.
type UpdateType int

// Update types.
const (
	// UpdateSet: the key now has this value (created or modified).
	UpdateSet UpdateType = iota + 1
	// UpdateDelete: the key is gone, or its value could not be decoded
	// (then Err says why) and it must be treated as gone.
	UpdateDelete
	// UpdateInSync: everything before this update is a complete snapshot
	// as of Revision; the stream has caught up. Sent once per Watch.
	UpdateInSync
)

func (t UpdateType) String() string {
	switch t {
	case UpdateSet:
		return "set"
	case UpdateDelete:
		return "delete"
	case UpdateInSync:
		return "in-sync"
	}
	return fmt.Sprintf("UpdateType(%d)", int(t))
}

// Update is one change delivered by a Watcher.
type Update struct {
	Type UpdateType
	// Key is the etcd key (empty for UpdateInSync).
	Key string
	// Kind, Namespace and Name identify a resource; Kind is empty for raw
	// keys.
	Kind, Namespace, Name string
	// Revision is the key's mod revision for UpdateSet, the revision of
	// the delete for UpdateDelete (the re-list's revision when a resync
	// found the key gone) and the snapshot's revision for UpdateInSync.
	Revision int64
	// Object is the decoded resource on UpdateSet of a resource key. A
	// Client.Watch consumer owns it; objects from a Hub subscription are
	// shared by every subscriber and must be treated as read-only.
	Object api.Object
	// Value is the raw value on UpdateSet of a raw key (read-only when
	// it comes from a Hub).
	Value []byte
	// Err is set when a value failed to decode; Type is then UpdateDelete.
	Err error
	// Received is when the watcher received the change from etcd (zero
	// for updates of a snapshot or re-list), for measuring how long a
	// consumer takes to act on a change.
	Received time.Time
}

// WatchOptions choose what a Watcher delivers.
type WatchOptions struct {
	// Kinds are the resource kinds to deliver, decoded.
	Kinds []api.KindInfo
	// RawPrefixes are key prefixes delivered as raw bytes, e.g.
	// "/calico/ipam/v2/assignment/".
	RawPrefixes []string
}

// Watcher delivers one ordered stream of updates: a snapshot, then one
// UpdateInSync, then every change in revision order. It survives a dropped
// connection or a restarted member by resuming from the last revision it
// delivered; when that revision has been compacted away it lists again and
// delivers just the difference (sets for new or changed keys, deletes for
// vanished ones) as one batch, so the consumer's view stays exact.
//
// Updates are queued without bound: a slow consumer receives every update,
// in larger batches. Only Stop (or the context given to Watch) ends the
// stream.
type Watcher struct {
	out    chan []Update
	notify chan struct{} // capacity 1: "the queue is non-empty"
	cancel context.CancelFunc
	done   chan struct{} // closed when both goroutines have exited

	mu    sync.Mutex
	queue []Update // guarded by mu
}

// Updates returns the stream. Each receive is a batch of consecutive
// updates; the channel is closed after Stop.
func (w *Watcher) Updates() <-chan []Update { return w.out }

// Stop ends the watch and waits for its goroutines.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Watch starts a watcher. It returns at once; the snapshot arrives on
// Updates.
func (c *Client) Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	if len(opts.Kinds) == 0 && len(opts.RawPrefixes) == 0 {
		return nil, errors.New("watch: no kinds or prefixes given")
	}
	s, err := newWatchState(c, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := newWatcher(cancel)
	s.sink = w
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.run(ctx) }()
	go func() { defer wg.Done(); w.pump(ctx) }()
	go func() { wg.Wait(); close(w.done) }()
	return w, nil
}

func newWatcher(cancel context.CancelFunc) *Watcher {
	return &Watcher{
		out:    make(chan []Update),
		notify: make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
	}
}

// newWatchState checks opts and prepares the producer of a watch.
func newWatchState(c *Client, opts WatchOptions) (*watchState, error) {
	s := &watchState{c: c, kinds: map[string]api.KindInfo{}, known: map[string]int64{}}
	var prefixes []string
	for _, k := range opts.Kinds {
		if k.Plural == "" {
			return nil, fmt.Errorf("watch: kind %q has no plural", k.Kind)
		}
		s.kinds[k.Plural] = k
		prefixes = append(prefixes, KindPrefix(k, ""))
	}
	for _, p := range opts.RawPrefixes {
		if p == "" {
			return nil, errors.New("watch: empty raw prefix")
		}
		s.raw = append(s.raw, p)
		prefixes = append(prefixes, p)
	}
	s.prefixes = disjoint(prefixes)
	s.common = commonPrefix(s.prefixes)
	return s, nil
}

// push queues updates for the consumer and wakes the pump; it never
// blocks.
func (w *Watcher) push(us ...Update) {
	if len(us) > 0 {
		w.mu.Lock()
		w.queue = append(w.queue, us...)
		w.mu.Unlock()
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// pump hands the whole queue to the consumer whenever it is ready.
func (w *Watcher) pump(ctx context.Context) {
	defer close(w.out)
	for {
		select {
		case <-w.notify:
		case <-ctx.Done():
			return
		}
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		select {
		case w.out <- batch:
		case <-ctx.Done():
			return
		}
	}
}

// sink receives the producer's batches, in order, from one goroutine: a
// Watcher (Client.Watch) or a Hub.
type sink interface{ push(us ...Update) }

// watchState is owned by the producer goroutine (run).
type watchState struct {
	c        *Client
	sink     sink
	kinds    map[string]api.KindInfo // by plural
	raw      []string
	prefixes []string // disjoint prefixes to list
	common   string   // one prefix covering them all, watched
	known    map[string]int64
	rev      int64 // everything up to rev has been queued
}

var errCompacted = errors.New("watch revision compacted")

func (s *watchState) run(ctx context.Context) {
	backoff := newBackoff()
	synced := false // UpdateInSync has been queued
	listed := false // a snapshot has been (at least partly) queued
	needList := true
	for ctx.Err() == nil {
		if needList {
			var err error
			if !listed {
				// Pages are queued as they are read; if this fails
				// part way, the next attempt is a resync against what
				// was queued, so nothing stale is left behind.
				listed = true
				err = s.snapshot(ctx)
			} else {
				err = s.resync(ctx)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.c.log.Warn("watch: listing failed, retrying", "prefix", s.common, "err", err)
					backoff.wait(ctx)
				}
				continue
			}
			if !synced {
				s.sink.push(Update{Type: UpdateInSync, Revision: s.rev})
				synced = true
			}
			needList = false
			backoff.reset()
		}
		if s.c.beforeWatch != nil {
			s.c.beforeWatch(s.rev)
		}
		err := s.watch(ctx, backoff)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errCompacted):
			s.c.log.Info("watch: revision compacted, listing again", "revision", s.rev+1)
			needList = true
		default:
			s.c.log.Warn("watch: stream ended, resuming", "revision", s.rev+1, "err", err)
			backoff.wait(ctx)
		}
	}
}

// snapshot lists every prefix at one revision, queueing page by page.
func (s *watchState) snapshot(ctx context.Context) error {
	var rev int64
	for _, p := range s.prefixes {
		r, err := s.c.listPages(ctx, p, rev, func(page []kv) error {
			batch := make([]Update, 0, len(page))
			for _, e := range page {
				if u, ok := s.update(e.key, e.value, e.modRev, false); ok {
					batch = append(batch, u)
				}
			}
			s.sink.push(s.decodeAll(batch)...)
			return nil
		})
		if err != nil {
			return err
		}
		rev = r
	}
	if rev == 0 {
		r, err := s.c.Revision(ctx)
		if err != nil {
			return err
		}
		rev = r
	}
	s.rev = rev
	return nil
}

// resync lists again (after a compaction, or a snapshot that failed part
// way) and queues the difference from what the consumer has been sent, in
// one batch.
func (s *watchState) resync(ctx context.Context) error {
	seen := make(map[string]bool, len(s.known))
	var batch []Update
	var rev int64
	for _, p := range s.prefixes {
		r, err := s.c.listPages(ctx, p, rev, func(page []kv) error {
			for _, e := range page {
				seen[e.key] = true
				if s.known[e.key] == e.modRev {
					continue
				}
				if u, ok := s.update(e.key, e.value, e.modRev, false); ok {
					batch = append(batch, u)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		rev = r
	}
	if rev == 0 {
		r, err := s.c.Revision(ctx)
		if err != nil {
			return err
		}
		rev = r
	}
	var gone []string
	for k := range s.known {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		if u, ok := s.update(k, nil, rev, true); ok {
			batch = append(batch, u)
		}
	}
	s.rev = rev
	s.sink.push(s.decodeAll(batch)...)
	return nil
}

// watch follows changes from s.rev+1 until the stream fails.
func (s *watchState) watch(ctx context.Context, backoff *backoff) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.c.etcd.Watch(wctx, s.common, clientv3.WithPrefix(), clientv3.WithRev(s.rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return errCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		backoff.reset()
		if len(resp.Events) == 0 {
			if resp.IsProgressNotify() && resp.Header.Revision > s.rev {
				s.rev = resp.Header.Revision
			}
			continue
		}
		batch := make([]Update, 0, len(resp.Events))
		now := time.Now()
		for _, ev := range resp.Events {
			del := ev.Type == clientv3.EventTypeDelete
			if u, ok := s.update(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, del); ok {
				u.Received = now
				batch = append(batch, u)
			}
			s.rev = ev.Kv.ModRevision
		}
		s.sink.push(s.decodeAll(batch)...)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// update turns one key change into an Update, and tracks the keys the
// consumer knows. ok is false for keys the watcher does not deliver. The
// value of a resource is left in Value, undecoded; decodeAll decodes it.
func (s *watchState) update(key string, value []byte, rev int64, del bool) (Update, bool) {
	u := Update{Key: key, Revision: rev}
	k, ns, name, isRes := ParseKey(key)
	if isRes {
		if _, want := s.kinds[k.Plural]; !want {
			isRes = false
		}
	}
	if !isRes && !hasAnyPrefix(key, s.raw) {
		return Update{}, false
	}
	if isRes {
		u.Kind, u.Namespace, u.Name = k.Kind, ns, name
	}
	if del {
		if _, had := s.known[key]; !had {
			return Update{}, false
		}
		delete(s.known, key)
		u.Type = UpdateDelete
		return u, true
	}
	s.known[key] = rev
	u.Type = UpdateSet
	u.Value = value
	return u, true
}

// decodeAll decodes the resources of a batch made by update, in place,
// spreading a large batch over the available cores. Order is kept.
func (s *watchState) decodeAll(batch []Update) []Update {
	const perWorker = 256
	workers := min(runtime.GOMAXPROCS(0), (len(batch)+perWorker-1)/perWorker)
	if workers <= 1 {
		s.decodeRange(batch)
		return batch
	}
	var wg sync.WaitGroup
	step := (len(batch) + workers - 1) / workers
	for lo := 0; lo < len(batch); lo += step {
		part := batch[lo:min(lo+step, len(batch))]
		wg.Go(func() { s.decodeRange(part) })
	}
	wg.Wait()
	return batch
}

// decodeRange decodes the resource sets of us. It only reads s.kinds, so
// several may run at once on disjoint ranges.
func (s *watchState) decodeRange(us []Update) {
	for i := range us {
		u := &us[i]
		if u.Type != UpdateSet || u.Kind == "" {
			continue
		}
		k, ok := s.kindOf(u.Key)
		if !ok {
			continue
		}
		obj, err := decode(k, u.Value, u.Revision)
		u.Value = nil
		if err != nil {
			s.c.log.Warn("watch: value does not decode; treating it as deleted", "key", u.Key, "revision", u.Revision, "err", err)
			u.Type, u.Err = UpdateDelete, fmt.Errorf("%s at revision %d: %w", u.Key, u.Revision, err)
			continue
		}
		u.Object = obj
	}
}

// kindOf finds the watched kind of a resource key.
func (s *watchState) kindOf(key string) (api.KindInfo, bool) {
	plural, _, _ := strings.Cut(strings.TrimPrefix(key, ResourcePrefix), "/")
	k, ok := s.kinds[plural]
	return k, ok
}

func hasAnyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// disjoint sorts prefixes and drops those covered by another.
func disjoint(prefixes []string) []string {
	ps := append([]string(nil), prefixes...)
	sort.Strings(ps)
	var out []string
	for _, p := range ps {
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// commonPrefix is the longest prefix shared by every string.
func commonPrefix(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	p := ss[0]
	for _, s := range ss[1:] {
		for !strings.HasPrefix(s, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// backoff is an exponential delay between retries, 100ms to 5s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	b.d = min(2*b.d, 5*time.Second)
}
