package cni

import (
	"context"
	"sync"
	"time"
)

// maxBatch bounds the requests one batch serves (a batch of endpoint
// writes or of handles must fit in one etcd transaction).
const maxBatch = 64

// batcher group-commits requests: while one batch runs, requests queue;
// when it is done, the next batch takes everything queued (up to
// maxBatch). N requests arriving together thus cost a few datastore
// transactions instead of N that contend with each other. One batch runs
// at a time.
type batcher[Req, Res any] struct {
	// run serves a batch and returns one result per request, in order.
	// It gets its own context (bounded by timeout), not a caller's.
	run     func(ctx context.Context, reqs []Req) []Res
	timeout time.Duration

	mu      sync.Mutex
	queue   []*batchItem[Req, Res] // guarded by mu
	running bool                   // guarded by mu: the loop is running
}

type batchItem[Req, Res any] struct {
	req  Req
	done chan Res // buffered, receives exactly one result
}

// do queues req and waits for its result. A request whose ctx ends while
// it is still queued is withdrawn (ok false: nothing was done). Once its
// batch has started it waits for the result, so the caller always learns
// what was done for it and can undo it.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (res Res, ok bool) {
	it := &batchItem[Req, Res]{req: req, done: make(chan Res, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, it)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case res := <-it.done:
		return res, true
	case <-ctx.Done():
	}
	b.mu.Lock()
	for i, q := range b.queue {
		if q == it {
			b.queue = append(b.queue[:i:i], b.queue[i+1:]...)
			b.mu.Unlock()
			return res, false
		}
	}
	b.mu.Unlock()
	return <-it.done, true
}

// loop runs batches until the queue is empty.
func (b *batcher[Req, Res]) loop() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		items := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()

		reqs := make([]Req, len(items))
		for i, it := range items {
			reqs[i] = it.req
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		res := b.run(ctx, reqs)
		cancel()
		for i, it := range items {
			it.done <- res[i]
		}
	}
}
