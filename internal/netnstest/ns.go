package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces are bind-mounted, as by `ip netns add`.
const NetnsDir = "/run/netns"

// RequireRoot skips the test, with a message, unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netnstest: privileged test needs root (network namespaces, veths, routes); run `go test` as root to include it")
	}
}

// NS is a named network namespace owned by one test.
type NS struct {
	name string
	path string
	fd   netns.NsHandle
	nl   *netlink.Handle
}

// Name is the namespace's unique name (as `ip netns list` shows it).
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind-mount path, usable with `ip netns exec`,
// netns.GetFromPath or ns.GetNS.
func (n *NS) Path() string { return n.path }

// Handle is a netlink handle bound to the namespace. It is closed on cleanup.
func (n *NS) Handle() *netlink.Handle { return n.nl }

// NsHandle is an open file descriptor of the namespace (for example for
// netlink.LinkSubscribeOptions.Namespace). It is closed on cleanup; do not
// close it.
func (n *NS) NsHandle() netns.NsHandle { return n.fd }

// Do runs fn on an OS thread switched into the namespace. Sockets created
// inside fn stay in the namespace after fn returns; /proc/sys/net opened
// inside fn shows the namespace's settings.
func (n *NS) Do(fn func() error) error {
	return ns.WithNetNSPath(n.path, func(ns.NetNS) error { return fn() })
}

// NewNS creates a uniquely named network namespace with lo up, deleted when
// the test ends.
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	n, err := newNS(name)
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(func() {
		if err := n.close(); err != nil {
			t.Errorf("netnstest: cleanup of namespace %s: %v", n.name, err)
		}
	})
	return n
}

// NewHostNS is NewNS for a namespace that plays a host: it also adds
// "169.254.1.1/32 dev lo proto static". Proxy ARP answers for the workload
// gateway 169.254.1.1 only when the host has a unicast route to it through
// another interface; a real host's default route provides one, and this
// stands in for it without giving the namespace a default route.
func NewHostNS(t testing.TB, name string) *NS {
	t.Helper()
	n := NewNS(t, name)
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netnstest: find lo in %s: %v", n.name, err)
	}
	r := &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       prefixToIPNet(netip.PrefixFrom(GatewayV4, 32)),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  unix.RTPROT_STATIC,
	}
	if err := n.nl.RouteAdd(r); err != nil {
		t.Fatalf("netnstest: gateway route in %s: %v", n.name, err)
	}
	return n
}

func newNS(name string) (*NS, error) {
	if name == "" {
		name = "ns"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return nil, fmt.Errorf("namespace name %q: only a-z, 0-9 and '-' are allowed", name)
		}
	}
	full := "brt-" + name + "-" + randHex(3)
	if err := createNamed(full); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", full, err)
	}
	n := &NS{name: full, path: filepath.Join(NetnsDir, full), fd: -1}
	fail := func(err error) (*NS, error) {
		if cerr := n.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	fd, err := netns.GetFromPath(n.path)
	if err != nil {
		return fail(fmt.Errorf("open namespace %s: %w", full, err))
	}
	n.fd = fd
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return fail(fmt.Errorf("netlink handle in %s: %w", full, err))
	}
	n.nl = h
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fail(fmt.Errorf("find lo in %s: %w", full, err))
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fail(fmt.Errorf("set lo up in %s: %w", full, err))
	}
	return n, nil
}

// createNamed creates and bind-mounts a namespace from a throwaway OS
// thread: the thread is left locked, so the runtime discards it instead of
// reusing a thread whose namespace was changed.
func createNamed(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	return <-errc
}

func (n *NS) close() error {
	var errs []error
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.fd >= 0 {
		if err := n.fd.Close(); err != nil {
			errs = append(errs, err)
		}
		n.fd = -1
	}
	if err := netns.DeleteNamed(n.name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetSysctl writes value to a sysctl inside the namespace. path is relative
// to /proc/sys and may use '/' ("net/ipv4/conf/eth0/proxy_arp") or, when it
// has no '/', dots ("net.ipv4.ip_forward").
func SetSysctl(n *NS, path, value string) error {
	p, err := sysctlPath(path)
	if err != nil {
		return err
	}
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", path, value, n.name, err)
		}
		return nil
	})
}

// GetSysctl reads a sysctl inside the namespace, trimmed of white space.
func GetSysctl(n *NS, path string) (string, error) {
	p, err := sysctlPath(path)
	if err != nil {
		return "", err
	}
	var out string
	err = n.Do(func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", path, n.name, err)
		}
		out = strings.TrimSpace(string(b))
		return nil
	})
	return out, err
}

func sysctlPath(path string) (string, error) {
	if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("sysctl path %q: want a relative path such as net/ipv4/ip_forward", path)
	}
	if !strings.Contains(path, "/") {
		path = strings.ReplaceAll(path, ".", "/")
	}
	return filepath.Join("/proc/sys", path), nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding for the whole namespace.
func EnableForwarding(n *NS) error {
	if err := SetSysctl(n, "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		return SetSysctl(n, "net/ipv6/conf/all/forwarding", "1")
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
