package agent

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/api"
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
