package route

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Run watches links in the target namespace until ctx ends: when a
// workload interface (or one a desired route names) appears or changes, it
// reconciles at once, so a new workload's routes and sysctls do not wait
// for the resync. Every ResyncInterval it calls Resync. Before the first
// Apply both are no-ops. Errors are logged and retried; Run returns nil
// when ctx ends.
func (d *Dataplane) Run(ctx context.Context) error {
	ticker := time.NewTicker(d.cfg.ResyncInterval)
	defer ticker.Stop()
	backoff := 100 * time.Millisecond
	for {
		updates := make(chan netlink.LinkUpdate, 512)
		done := make(chan struct{})
		opts := netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				select {
				case <-done:
					// We closed the socket (shutdown or resubscribe):
					// the receive error that follows is expected.
				default:
					d.log.Warn("route: link subscription error", "err", err)
				}
			},
		}
		if d.cfg.Netns != "" {
			h := d.nsfd
			opts.Namespace = &h
		}
		if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
			d.log.Warn("route: cannot subscribe to link events; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// Links may have appeared while we were not subscribed.
		d.reconcileIfSynced(false)
		d.mu.Lock()
		d.stats.Watches++
		d.mu.Unlock()
		more := d.watch(ctx, updates, ticker.C)
		unsubscribe(done, updates)
		if !more {
			return nil
		}
		// The subscription failed; subscribe again.
	}
}

// unsubscribe closes a link subscription and waits for its receiving
// goroutine to end: closing done closes the socket, the receiver's read
// fails and it closes updates. Draining updates meanwhile keeps it from
// blocking on a full channel, so no goroutine outlives Run.
func unsubscribe(done chan struct{}, updates <-chan netlink.LinkUpdate) {
	close(done)
	for range updates {
	}
}

// watch handles link updates and resync ticks. It returns false when ctx
// ends and true when the subscription closed.
func (d *Dataplane) watch(ctx context.Context, updates chan netlink.LinkUpdate, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			if err := d.Resync(); err != nil {
				d.log.Warn("route: resync", "err", err)
			}
		case u, ok := <-updates:
			if !ok {
				return true
			}
			relevant := d.relevant(u)
			// Coalesce a burst of events into one reconcile.
			for drained := false; !drained; {
				select {
				case u2, ok := <-updates:
					if !ok {
						if relevant {
							d.reconcileIfSynced(false)
						}
						return true
					}
					relevant = relevant || d.relevant(u2)
				default:
					drained = true
				}
			}
			if relevant {
				d.reconcileIfSynced(true)
			}
		}
	}
}

// relevant: a new or changed link that is a workload interface or that a
// desired route names. Deleted links take their routes with them.
func (d *Dataplane) relevant(u netlink.LinkUpdate) bool {
	if u.Header.Type != unix.RTM_NEWLINK || u.Link == nil {
		return false
	}
	name := u.Link.Attrs().Name
	if d.cfg.isWorkloadIface(name) {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, iface := range d.desired {
		if iface == name {
			return true
		}
	}
	return false
}

func (d *Dataplane) reconcileIfSynced(event bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.desired == nil || d.nl == nil {
		return
	}
	if event {
		d.stats.LinkEvents++
	}
	if err := d.reconcile(false); err != nil {
		d.log.Warn("route: reconcile after link event", "err", err)
	}
}
