package route

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultProtocol is Brindle's route protocol number: 98, ASCII 'b'. It is
// not in iproute2's rt_protos list nor among the kernel's RTPROT_*
// constants, and Calico's choices (3 "boot" for workload routes, 80 for
// encapsulation routes) are elsewhere, so a host running both can tell
// them apart. `ip route show proto 98` lists what we own; adding
// "98 brindle" to /etc/iproute2/rt_protos.d/brindle.conf makes iproute2
// print the name.
const DefaultProtocol netlink.RouteProtocol = 98

// ProtocolName is how Dump prints routes that carry our protocol.
const ProtocolName = "brindle"

// DefaultResyncInterval is how often Run reads the kernel back and repairs
// drift (Calico's route refresh interval is also 90 s).
const DefaultResyncInterval = 90 * time.Second

// DefaultInterfacePrefixes are the workload interface prefixes (compat §5.2).
var defaultInterfacePrefixes = []string{"cali"}

// Config configures a route Dataplane.
type Config struct {
	// InterfacePrefixes name the workload interfaces: routes on them and
	// their sysctls belong to us. Default ["cali"].
	InterfacePrefixes []string
	// Protocol is the route protocol number that marks routes as ours.
	// Default DefaultProtocol; 0–4 (unspec, redirect, kernel, boot,
	// static) are shared with everybody and rejected.
	Protocol netlink.RouteProtocol
	// ResyncInterval is how often Run repairs drift. Default
	// DefaultResyncInterval.
	ResyncInterval time.Duration
	// Netns is the path of the network namespace to program
	// (/run/netns/NAME, /proc/PID/ns/net); "" means the caller's own.
	Netns string
	// Logger receives warnings and debug lines; nil discards them.
	Logger *slog.Logger
}

// WithDefaults returns c with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.InterfacePrefixes == nil {
		c.InterfacePrefixes = append([]string(nil), defaultInterfacePrefixes...)
	}
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with a (defaulted) Config.
func (c Config) Validate() error {
	if len(c.InterfacePrefixes) == 0 {
		return fmt.Errorf("route config: InterfacePrefixes is empty")
	}
	for i, p := range c.InterfacePrefixes {
		switch {
		case p == "":
			return fmt.Errorf("route config: InterfacePrefixes[%d] is empty", i)
		case len(p) > unix.IFNAMSIZ-2:
			return fmt.Errorf("route config: InterfacePrefixes[%d] %q is longer than %d bytes", i, p, unix.IFNAMSIZ-2)
		case strings.ContainsAny(p, "/ \t\n:"):
			return fmt.Errorf("route config: InterfacePrefixes[%d] %q contains a character not allowed in interface names", i, p)
		}
	}
	if c.Protocol <= unix.RTPROT_STATIC || c.Protocol > 255 {
		return fmt.Errorf("route config: Protocol %d: want 5–255 (0–4 are unspec, redirect, kernel, boot and static, shared with other software)", int(c.Protocol))
	}
	if c.ResyncInterval < 0 {
		return fmt.Errorf("route config: ResyncInterval %s is negative", c.ResyncInterval)
	}
	if c.Netns != "" && !filepath.IsAbs(c.Netns) {
		return fmt.Errorf("route config: Netns %q is not an absolute path", c.Netns)
	}
	return nil
}

// isWorkloadIface reports whether name starts with one of our prefixes.
func (c Config) isWorkloadIface(name string) bool {
	for _, p := range c.InterfacePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
