// Package nlhandle opens a netlink handle on the current network namespace
// or on one named by its path (/run/netns/NAME, /proc/PID/ns/net), the way
// every dataplane that can be pointed at a namespace (Config.Netns) does.
//
// Contract: Open returns the handle and, for a path, the namespace's
// handle, which stays open so that later subscriptions can be made in the
// same namespace; for the current namespace it is -1. Close releases both
// and tolerates a nil netlink handle and a -1 namespace handle, so a
// half-opened pair from a failed Open, or one closed before, is fine.
package nlhandle

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Open returns a netlink handle on the network namespace at path, with
// that namespace's handle, or on the current namespace (and -1) when path
// is "". Errors say which step failed ("open netns PATH: ...", "netlink
// handle: ..."); nothing stays open after an error.
func Open(path string) (*netlink.Handle, netns.NsHandle, error) {
	if path == "" {
		nl, err := netlink.NewHandle()
		if err != nil {
			return nil, -1, fmt.Errorf("netlink handle: %w", err)
		}
		return nl, -1, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, -1, fmt.Errorf("netlink handle: %w", err)
	}
	return nl, ns, nil
}

// Close closes nl when it is not nil and ns when it is open (>= 0), and
// returns the error of closing ns.
func Close(nl *netlink.Handle, ns netns.NsHandle) error {
	if nl != nil {
		nl.Close()
	}
	if ns >= 0 {
		return ns.Close()
	}
	return nil
}
