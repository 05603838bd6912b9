package nft

import (
	"testing"
)

func TestPrivilegedProfileAllowAndPCI(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	for _, w := range l.wl {
		w.ServeTCP(6379)
		w.ServeTCP(80)
	}
	l.apply(pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db")))
	l.check(
		// Default allow via the kns profile for endpoints no policy selects.
		probe{"db", "front", "TCP", 80, true},
		probe{"other", "front", "TCP", 6379, true},
		// The PCI database: only PCI frontends, only 6379.
		probe{"front", "db", "TCP", 6379, true},
		probe{"other", "db", "TCP", 6379, false},
		probe{"front", "db", "TCP", 80, false},
	)
}
