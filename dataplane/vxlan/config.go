package vxlan

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults, as Calico's (compat §7.6, §6.1).
const (
	// DefaultDevice is the VXLAN device's name, Calico's own.
	DefaultDevice = "vxlan.calico"
	// DefaultVNI is the VXLAN network identifier.
	DefaultVNI = 4096
	// DefaultPort is the UDP destination port (IANA's VXLAN port).
	DefaultPort = 4789
	// Overhead is what VXLAN over IPv4 costs a packet: outer IPv4 (20),
	// UDP (8), VXLAN (8) and inner Ethernet (14) headers.
	Overhead = 50
	// DefaultProtocol marks our routes: 97 (ASCII 'a'), next to the route
	// dataplane's 98 and the BGP speaker's 99, so each reconciler prunes
	// only its own routes.
	DefaultProtocol netlink.RouteProtocol = 97
	// DefaultResyncInterval is how often the daemon reads the kernel back
	// and repairs drift.
	DefaultResyncInterval = 90 * time.Second
)

// Config configures a Dataplane.
type Config struct {
	// Device is the VXLAN device name. Default DefaultDevice.
	Device string
	// VNI is the VXLAN network identifier. Default DefaultVNI.
	VNI int
	// Port is the UDP port. Default DefaultPort.
	Port int
	// MTU of the device; 0 means the parent interface's MTU minus
	// Overhead.
	MTU int
	// Protocol marks our routes. Default DefaultProtocol; 0–4 are shared
	// with other software and rejected.
	Protocol netlink.RouteProtocol
	// Netns is the path of the network namespace to program; "" means the
	// caller's own.
	Netns string
	// Logger receives warnings and debug lines; nil discards them.
	Logger *slog.Logger
}

// WithDefaults returns c with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with a (defaulted) Config.
func (c Config) Validate() error {
	switch {
	case len(c.Device) > unix.IFNAMSIZ-1:
		return fmt.Errorf("vxlan config: Device %q is longer than %d bytes", c.Device, unix.IFNAMSIZ-1)
	case strings.ContainsAny(c.Device, "/ \t\n:"):
		return fmt.Errorf("vxlan config: Device %q contains a character not allowed in interface names", c.Device)
	case c.VNI < 1 || c.VNI > 1<<24-1:
		return fmt.Errorf("vxlan config: VNI %d: want 1–16777215", c.VNI)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("vxlan config: Port %d: want 1–65535", c.Port)
	case c.MTU < 0 || (c.MTU > 0 && c.MTU < 68):
		return fmt.Errorf("vxlan config: MTU %d: want 0 (parent's minus %d) or at least 68", c.MTU, Overhead)
	case c.Protocol <= unix.RTPROT_STATIC || c.Protocol > 255:
		return fmt.Errorf("vxlan config: Protocol %d: want 5–255 (0–4 are shared with other software)", int(c.Protocol))
	case c.Netns != "" && !filepath.IsAbs(c.Netns):
		return fmt.Errorf("vxlan config: Netns %q is not an absolute path", c.Netns)
	}
	return nil
}
