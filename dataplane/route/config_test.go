package route

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" = valid
	}{
		{name: "defaults", cfg: Config{}},
		{name: "two prefixes", cfg: Config{InterfacePrefixes: []string{"cali", "tap"}, Protocol: 200, ResyncInterval: time.Second, Netns: "/run/netns/x"}},
		{name: "empty prefix list", cfg: Config{InterfacePrefixes: []string{}}, wantErr: "InterfacePrefixes is empty"},
		{name: "empty prefix", cfg: Config{InterfacePrefixes: []string{"cali", ""}}, wantErr: "InterfacePrefixes[1] is empty"},
		{name: "long prefix", cfg: Config{InterfacePrefixes: []string{"abcdefghijklmno"}}, wantErr: "longer than 14"},
		{name: "slash in prefix", cfg: Config{InterfacePrefixes: []string{"ca/li"}}, wantErr: "not allowed"},
		{name: "proto static", cfg: Config{Protocol: unix.RTPROT_STATIC}, wantErr: "Protocol 4"},
		{name: "proto boot", cfg: Config{Protocol: unix.RTPROT_BOOT}, wantErr: "Protocol 3"},
		{name: "proto too big", cfg: Config{Protocol: 256}, wantErr: "Protocol 256"},
		{name: "negative resync", cfg: Config{ResyncInterval: -time.Second}, wantErr: "ResyncInterval -1s is negative"},
		{name: "relative netns", cfg: Config{Netns: "run/netns/x"}, wantErr: "not an absolute path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.Protocol != DefaultProtocol || d.ResyncInterval != DefaultResyncInterval || !cmp.Equal(d.InterfacePrefixes, []string{"cali"}) || d.Logger == nil {
		t.Errorf("WithDefaults() = %+v", d)
	}
}

func TestRoutesIndex(t *testing.T) {
	cfg := Config{InterfacePrefixes: []string{"cali", "tap"}}.WithDefaults()
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		in      Routes
		want    map[netip.Prefix]string
		wantErr string
	}{
		{name: "empty", in: Routes{}, want: map[netip.Prefix]string{}},
		{
			name: "v4 and v6, duplicate on the same interface folded",
			in:   Routes{"cali1": {pfx("10.0.0.1/32"), pfx("fd00::1/128"), pfx("10.0.0.1/32")}, "tap2": {pfx("10.0.0.2/32")}},
			want: map[netip.Prefix]string{pfx("10.0.0.1/32"): "cali1", pfx("fd00::1/128"): "cali1", pfx("10.0.0.2/32"): "tap2"},
		},
		{name: "empty name", in: Routes{"": {pfx("10.0.0.1/32")}}, wantErr: "routes: empty interface name"},
		{name: "long name", in: Routes{"cali0123456789ab": nil}, wantErr: `interface "cali0123456789ab" is longer than 15 bytes`},
		{name: "foreign interface", in: Routes{"eth0": {pfx("10.0.0.1/32")}}, wantErr: `interface "eth0" does not start with a workload prefix`},
		{name: "invalid prefix", in: Routes{"cali1": {pfx("10.0.0.1/32"), {}}}, wantErr: "routes: cali1[1]: invalid prefix"},
		{name: "host bits", in: Routes{"cali1": {pfx("10.0.0.1/24")}}, wantErr: "cali1[0]: 10.0.0.1/24 has host bits set (want 10.0.0.0/24)"},
		{name: "mapped", in: Routes{"cali1": {pfx("::ffff:10.0.0.1/128")}}, wantErr: "IPv4-mapped"},
		{name: "conflict", in: Routes{"cali1": {pfx("10.0.0.1/32")}, "cali2": {pfx("10.0.0.1/32")}}, wantErr: "routes: 10.0.0.1/32 is wanted on both cali1 and cali2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.index(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("index() error = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("index() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIsOursAndFormat(t *testing.T) {
	d := &Dataplane{cfg: Config{}.WithDefaults()}
	ipnet := func(s string) *net.IPNet { _, n, _ := net.ParseCIDR(s); return n }
	base := func(dst string, proto netlink.RouteProtocol) netlink.Route {
		return netlink.Route{Dst: ipnet(dst), Protocol: proto, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_LINK, LinkIndex: 7}
	}
	with := func(r netlink.Route, f func(*netlink.Route)) netlink.Route { f(&r); return r }
	tests := []struct {
		route  netlink.Route
		link   string
		ours   bool
		format string
	}{
		{base("10.0.0.1/32", 98), "caliabc", true, "10.0.0.1/32 dev caliabc proto brindle scope link"},
		{base("10.0.0.1/32", 98), "eth0", true, "10.0.0.1/32 dev eth0 proto brindle scope link"},
		{base("10.0.0.1/32", unix.RTPROT_BOOT), "caliabc", true, "10.0.0.1/32 dev caliabc proto boot scope link"},
		{base("10.0.0.1/32", unix.RTPROT_BOOT), "eth0", false, "10.0.0.1/32 dev eth0 proto boot scope link"},
		{base("10.0.0.0/24", unix.RTPROT_KERNEL), "caliabc", false, "10.0.0.0/24 dev caliabc proto kernel scope link"},
		{with(base("fe80::/64", unix.RTPROT_KERNEL), func(r *netlink.Route) { r.Scope = 0; r.Priority = 256 }), "caliabc", false, "fe80::/64 dev caliabc proto kernel metric 256"},
		{with(base("fe80::/64", unix.RTPROT_STATIC), func(r *netlink.Route) { r.Scope = 0 }), "caliabc", false, "fe80::/64 dev caliabc proto static"},
		{with(base("fd00::1/128", 98), func(r *netlink.Route) { r.Scope = 0; r.Priority = 1024 }), "caliabc", true, "fd00::1/128 dev caliabc proto brindle metric 1024"},
		{with(base("10.0.0.1/32", 98), func(r *netlink.Route) { r.Table = 100 }), "caliabc", false, "10.0.0.1/32 dev caliabc proto brindle scope link"},
		{with(base("10.0.0.1/32", 98), func(r *netlink.Route) { r.Type = unix.RTN_BLACKHOLE }), "", false, "10.0.0.1/32 dev if7 proto brindle scope link"},
		{with(base("10.0.0.0/8", 17), func(r *netlink.Route) { r.Gw = net.ParseIP("192.0.2.1"); r.Scope = 0 }), "caliabc", true, "10.0.0.0/8 via 192.0.2.1 dev caliabc proto 17"},
	}
	for _, tc := range tests {
		if got := d.isOurs(tc.route, tc.link); got != tc.ours {
			t.Errorf("isOurs(%s) = %v, want %v", tc.format, got, tc.ours)
		}
		if got := FormatRoute(tc.route, tc.link, d.cfg.Protocol); got != tc.format {
			t.Errorf("FormatRoute() = %q, want %q", got, tc.format)
		}
	}
}
