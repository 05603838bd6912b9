package cni

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/brindle-net/brindle/ipam"
)

// maxBatch bounds the requests one AutoAssignMany serves (each handle is a
// store write of its own; the block is written once).
const maxBatch = 128

// assigner group-commits this host's automatic assignments: while one
// batch is being assigned, requests queue; when it is done, the next batch
// takes everything queued, so N ADDs arriving together cost a few block
// writes instead of N conflicting ones. Only one batch runs at a time
// (the role Calico's host-wide IPAM lock plays).
type assigner struct {
	ipam    *ipam.IPAM
	timeout time.Duration

	mu      sync.Mutex
	queue   []*assignReq // guarded by mu
	running bool         // guarded by mu: a batch loop is running
}

type assignReq struct {
	args ipam.AutoAssignArgs
	done chan ipam.AssignResult // buffered, receives exactly one result
}

// assign queues args and waits for its result. A request whose ctx ends
// while it is still queued is withdrawn; once its batch has started it
// waits for the result (the batch runs on its own bounded context), so the
// caller always learns what it holds and can release it.
func (a *assigner) assign(ctx context.Context, args ipam.AutoAssignArgs) ([]netip.Prefix, error) {
	r := &assignReq{args: args, done: make(chan ipam.AssignResult, 1)}
	a.mu.Lock()
	a.queue = append(a.queue, r)
	if !a.running {
		a.running = true
		go a.loop()
	}
	a.mu.Unlock()
	select {
	case res := <-r.done:
		return res.Prefixes, res.Err
	case <-ctx.Done():
	}
	a.mu.Lock()
	for i, q := range a.queue {
		if q == r {
			a.queue = append(a.queue[:i:i], a.queue[i+1:]...)
			a.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	a.mu.Unlock()
	res := <-r.done
	return res.Prefixes, res.Err
}

// loop runs batches until the queue is empty.
func (a *assigner) loop() {
	for {
		a.mu.Lock()
		n := min(len(a.queue), maxBatch)
		if n == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		batch := a.queue[:n:n]
		a.queue = a.queue[n:]
		a.mu.Unlock()

		args := make([]ipam.AutoAssignArgs, len(batch))
		for i, r := range batch {
			args[i] = r.args
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		res := a.ipam.AutoAssignMany(ctx, args)
		cancel()
		for i, r := range batch {
			r.done <- res[i]
		}
	}
}
