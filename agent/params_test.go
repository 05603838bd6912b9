package agent

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/desired"
)

func TestResolvePrecedence(t *testing.T) {
	// Each layer sets some parameters; the highest layer that sets a
	// parameter wins (compat §6.4).
	flags := Layer{Name: "flags", Values: map[string]string{"LogSeverityScreen": "Error"}}
	env := EnvLayer([]string{
		"FELIX_LOGSEVERITYSCREEN=Debug", // loses to flags
		"FELIX_HEALTHPORT=9100",         // loses to BRINDLE_
		"BRINDLE_HEALTHPORT=9200",
		"FELIX_ROUTEREFRESHINTERVAL=30", // seconds, Felix style
		"PATH=/usr/bin",
	})
	file, err := ParseConfigFile("node.cfg", []byte(`
# comment
[global]
HealthPort = 9300
healthenabled = true
NftablesRefreshInterval = 1m
[other]
Ignored = yes
`))
	if err != nil {
		t.Fatal(err)
	}
	yes, host := true, "0.0.0.0"
	port := 9500
	node := FelixConfigLayer("node.h1", &api.FelixConfigurationSpec{
		HealthEnabled:   new(bool), // false, loses to the file
		HealthHost:      &host,
		InterfacePrefix: "tap",
	})
	def := FelixConfigLayer("default", &api.FelixConfigurationSpec{
		InterfacePrefix:             "cali", // loses to node
		DefaultEndpointToHostAction: "Accept",
		PrometheusMetricsEnabled:    &yes,
		PrometheusMetricsPort:       &port,
	})
	r, err := Resolve(flags, env, file, node, def)
	if err != nil {
		t.Fatal(err)
	}
	want := Params{
		InterfacePrefix:             []string{"tap"},
		DefaultEndpointToHostAction: desired.EndpointToHostAccept,
		HealthEnabled:               true,
		HealthHost:                  "0.0.0.0",
		HealthPort:                  9200,
		PrometheusMetricsEnabled:    true,
		PrometheusMetricsHost:       "",
		PrometheusMetricsPort:       9500,
		RouteRefreshInterval:        30 * time.Second,
		NftablesRefreshInterval:     time.Minute,
		LogSeverityScreen:           slog.LevelError,
		IptablesMarkMask:            0xffff0000,
	}
	if diff := cmp.Diff(want, r.Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	wantSrc := map[string]string{
		ParamInterfacePrefix:             "FelixConfiguration node.h1",
		ParamDefaultEndpointToHostAction: "FelixConfiguration default",
		ParamHealthEnabled:               "config file node.cfg",
		ParamHealthHost:                  "FelixConfiguration node.h1",
		ParamHealthPort:                  "environment",
		ParamPrometheusMetricsEnabled:    "FelixConfiguration default",
		ParamPrometheusMetricsHost:       "default",
		ParamPrometheusMetricsPort:       "FelixConfiguration default",
		ParamRouteRefreshInterval:        "environment",
		ParamNftablesRefreshInterval:     "config file node.cfg",
		ParamLogSeverityScreen:           "flags",
		ParamIptablesMarkMask:            "default",
	}
	if diff := cmp.Diff(wantSrc, r.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

func TestResolveDefaults(t *testing.T) {
	r, err := Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := Params{
		InterfacePrefix: []string{"cali"}, HealthHost: "localhost", HealthPort: 9099, PrometheusMetricsPort: 9091,
		RouteRefreshInterval: 90 * time.Second, NftablesRefreshInterval: 180 * time.Second, LogSeverityScreen: slog.LevelInfo,
		IptablesMarkMask: 0xffff0000,
	}
	if diff := cmp.Diff(want, r.Params); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name  string
		layer Layer
		want  string
	}{
		{"bad port", Layer{"flags", map[string]string{"HealthPort": "99999"}}, `flags: HealthPort "99999": want a port number`},
		{"bad bool", Layer{"environment", map[string]string{"HealthEnabled": "maybe"}}, `environment: HealthEnabled "maybe": want true or false`},
		{"bad action", Layer{"FelixConfiguration default", map[string]string{"DefaultEndpointToHostAction": "Reject"}},
			`FelixConfiguration default: DefaultEndpointToHostAction "Reject": want Drop, Accept or Return`},
		{"bad prefix", Layer{"flags", map[string]string{"InterfacePrefix": "cali,,tap"}}, `InterfacePrefix "cali,,tap": entry 1 ""`},
		{"bad interval", Layer{"flags", map[string]string{"RouteRefreshInterval": "-5"}}, `RouteRefreshInterval "-5": must not be negative`},
		{"bad severity", Layer{"flags", map[string]string{"LogSeverityScreen": "loud"}}, `LogSeverityScreen "loud": want Debug`},
		{"unknown", Layer{"flags", map[string]string{"InterfacePrefx": "tap"}}, `flags: unknown parameter "InterfacePrefx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(tt.layer)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigFileErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"[global]\nHealthPort 9099\n", "f.cfg:2: want Name = value"},
		{"[global\n", "f.cfg:1: unterminated section header"},
		{"[global]\nNoSuchThing = 1\n", `f.cfg:2: unknown parameter "NoSuchThing"`},
	}
	for _, tt := range tests {
		_, err := ParseConfigFile("f.cfg", []byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfigFile(%q): error %v, want %q", tt.text, err, tt.want)
		}
	}
}

func TestRestartNeeded(t *testing.T) {
	base, _ := Resolve()
	tests := []struct {
		name   string
		change Layer
		want   []string
	}{
		{"nothing", Layer{"x", nil}, nil},
		{"prefix", Layer{"x", map[string]string{"InterfacePrefix": "tap"}}, []string{ParamInterfacePrefix}},
		{"health port", Layer{"x", map[string]string{"HealthPort": "1"}}, []string{"Health*"}},
		{"metrics", Layer{"x", map[string]string{"PrometheusMetricsEnabled": "true"}}, []string{"PrometheusMetrics*"}},
		{"live: action", Layer{"x", map[string]string{"DefaultEndpointToHostAction": "Accept"}}, nil},
		{"live: log", Layer{"x", map[string]string{"LogSeverityScreen": "Debug"}}, nil},
		{"live: interval", Layer{"x", map[string]string{"RouteRefreshInterval": "5s"}}, nil},
		{"mark mask", Layer{"x", map[string]string{"IptablesMarkMask": "0xff00"}}, []string{ParamIptablesMarkMask}},
	}
	for _, tt := range tests {
		r, err := Resolve(tt.change)
		if err != nil {
			t.Fatal(err)
		}
		if got := RestartNeeded(base.Params, r.Params); !cmp.Equal(got, tt.want) {
			t.Errorf("%s: RestartNeeded = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNftMarks(t *testing.T) {
	tests := []struct {
		mask, pass, class uint32
		err               bool
	}{
		{mask: 0xffff0000, pass: nft.DefaultPassMark, class: nft.DefaultClassMask},
		{mask: 0x0000ff00, pass: 0x8000, class: 0x7f00},         // one run: its top bit passes
		{mask: 0xff00ff00, pass: 0x01000000, class: 0xff00},     // the next run's lowest bit passes
		{mask: 0x00ff8000, pass: 0x00800000, class: 0x007f8000}, // nine bits: eight for classes
		{mask: 0xfff00000, pass: 0x20000000, class: 0x1ff00000}, // twelve bits
		{mask: 0x0000000f, pass: 0x8, class: 0x7},               // the least that works
		{mask: 0x00000007, err: true},
		{mask: 0x00000101, err: true}, // no three contiguous bits
		{mask: 0, err: true},
	}
	for _, tt := range tests {
		pass, class, err := nftMarks(tt.mask)
		if (err != nil) != tt.err || !tt.err && (pass != tt.pass || class != tt.class) {
			t.Errorf("nftMarks(%#x) = %#x, %#x, %v; want %#x, %#x, error %v", tt.mask, pass, class, err, tt.pass, tt.class, tt.err)
			continue
		}
		if err == nil {
			if verr := (nft.Config{PassMark: pass, ClassMask: class}).Validate(); verr != nil {
				t.Errorf("nftMarks(%#x): the nft config is invalid: %v", tt.mask, verr)
			}
			if pass&tt.mask == 0 || class&^tt.mask != 0 {
				t.Errorf("nftMarks(%#x) = %#x, %#x: outside the mask", tt.mask, pass, class)
			}
		}
	}
	// Through Resolve: the default, a FelixConfiguration value, a bad one.
	r, err := Resolve()
	if err != nil || r.Params.IptablesMarkMask != 0xffff0000 {
		t.Fatalf("default IptablesMarkMask = %#x, %v", r.Params.IptablesMarkMask, err)
	}
	m := uint32(0xff00)
	r, err = Resolve(FelixConfigLayer("default", &api.FelixConfigurationSpec{IptablesMarkMask: &m}))
	if err != nil || r.Params.IptablesMarkMask != 0xff00 || r.Sources[ParamIptablesMarkMask] != "FelixConfiguration default" {
		t.Fatalf("FelixConfiguration IptablesMarkMask: %#x from %q, %v", r.Params.IptablesMarkMask, r.Sources[ParamIptablesMarkMask], err)
	}
	if _, err := Resolve(Layer{"flags", map[string]string{"IptablesMarkMask": "0x3"}}); err == nil || !strings.Contains(err.Error(), "IptablesMarkMask") {
		t.Errorf("a 2-bit mask: err = %v, want one naming IptablesMarkMask", err)
	}
}
