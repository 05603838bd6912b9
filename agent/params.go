package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
)

// Params are the agent's tunable settings, Felix's names and defaults
// (compat §3.1 FelixConfiguration, §6.4). Resolve fills them from layers.
type Params struct {
	// InterfacePrefix lists workload interface prefixes (comma-separated
	// in every source). Restart-required.
	InterfacePrefix []string
	// DefaultEndpointToHostAction is Drop, Accept or Return. Live.
	DefaultEndpointToHostAction desired.EndpointToHostAction
	// Health server (/livez, /readyz). Restart-required.
	HealthEnabled bool
	HealthHost    string
	HealthPort    int
	// Prometheus server (/metrics). Restart-required.
	PrometheusMetricsEnabled bool
	PrometheusMetricsHost    string
	PrometheusMetricsPort    int
	// Periodic resyncs of the route and nftables dataplanes. Live. Zero
	// disables the periodic resync.
	RouteRefreshInterval    time.Duration
	NftablesRefreshInterval time.Duration
	// LogSeverityScreen is the log level. Live.
	LogSeverityScreen slog.Level
	// IptablesMarkMask holds the packet-mark bits Brindle may use (Felix's
	// name; nftables here): the class field and the pass bit are taken
	// from it (nftMarks). Restart-required.
	IptablesMarkMask uint32
}

// Parameter names, as Felix spells them. Sources are matched
// case-insensitively.
const (
	ParamInterfacePrefix             = "InterfacePrefix"
	ParamDefaultEndpointToHostAction = "DefaultEndpointToHostAction"
	ParamHealthEnabled               = "HealthEnabled"
	ParamHealthHost                  = "HealthHost"
	ParamHealthPort                  = "HealthPort"
	ParamPrometheusMetricsEnabled    = "PrometheusMetricsEnabled"
	ParamPrometheusMetricsHost       = "PrometheusMetricsHost"
	ParamPrometheusMetricsPort       = "PrometheusMetricsPort"
	ParamRouteRefreshInterval        = "RouteRefreshInterval"
	ParamNftablesRefreshInterval     = "NftablesRefreshInterval"
	ParamLogSeverityScreen           = "LogSeverityScreen"
	ParamIptablesMarkMask            = "IptablesMarkMask"
)

// param describes one parameter: its default, how to parse it into Params
// and whether a change needs a restart.
type param struct {
	name    string
	def     string
	restart bool
	set     func(p *Params, v string) error
}

var params = []param{
	{ParamInterfacePrefix, desired.DefaultInterfacePrefix, true, func(p *Params, v string) (err error) {
		p.InterfacePrefix, err = parsePrefixes(v)
		return err
	}},
	{ParamDefaultEndpointToHostAction, "Drop", false, func(p *Params, v string) (err error) {
		p.DefaultEndpointToHostAction, err = parseEndpointToHost(v)
		return err
	}},
	{ParamHealthEnabled, "false", true, func(p *Params, v string) (err error) { p.HealthEnabled, err = parseBool(v); return err }},
	{ParamHealthHost, "localhost", true, func(p *Params, v string) error { p.HealthHost = v; return nil }},
	{ParamHealthPort, "9099", true, func(p *Params, v string) (err error) { p.HealthPort, err = parsePort(v); return err }},
	{ParamPrometheusMetricsEnabled, "false", true, func(p *Params, v string) (err error) {
		p.PrometheusMetricsEnabled, err = parseBool(v)
		return err
	}},
	{ParamPrometheusMetricsHost, "", true, func(p *Params, v string) error { p.PrometheusMetricsHost = v; return nil }},
	{ParamPrometheusMetricsPort, "9091", true, func(p *Params, v string) (err error) {
		p.PrometheusMetricsPort, err = parsePort(v)
		return err
	}},
	{ParamRouteRefreshInterval, "90s", false, func(p *Params, v string) (err error) {
		p.RouteRefreshInterval, err = parseInterval(v)
		return err
	}},
	{ParamNftablesRefreshInterval, "180s", false, func(p *Params, v string) (err error) {
		p.NftablesRefreshInterval, err = parseInterval(v)
		return err
	}},
	{ParamLogSeverityScreen, "Info", false, func(p *Params, v string) (err error) {
		p.LogSeverityScreen, err = ParseSeverity(v)
		return err
	}},
	{ParamIptablesMarkMask, "0xffff0000", true, func(p *Params, v string) error {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 32)
		if err != nil {
			return errors.New("want a 32-bit number like 0xffff0000")
		}
		if _, _, err := nftMarks(uint32(n)); err != nil {
			return err
		}
		p.IptablesMarkMask = uint32(n)
		return nil
	}},
}

// nftMarks takes the nftables dataplane's mark bits from mask: the class
// field (nft.Config.ClassMask) is the lowest run of contiguous bits of
// mask, at most 9 of them, and the pass bit is the next bit of mask above
// it; when mask has none, the run's top bit becomes the pass bit. The
// default 0xffff0000 gives class 0x01ff0000 and pass 0x02000000, the nft
// defaults. A class field needs at least 3 bits (7 classes per direction).
func nftMarks(mask uint32) (pass, class uint32, err error) {
	if mask == 0 {
		return 0, 0, errors.New("no bits: Brindle needs at least 4, the lowest 3 contiguous")
	}
	low := bits.TrailingZeros32(mask)
	run := bits.TrailingZeros32(^(mask >> low)) // contiguous bits from low
	width := min(run, 9)
	class = (uint32(1)<<width - 1) << low
	if above := mask &^ (class | (class - 1)); above != 0 {
		pass = above & -above // the lowest set bit above the class field
	} else {
		width--
		class = (uint32(1)<<width - 1) << low
		pass = uint32(1) << (low + width)
	}
	if width < 3 {
		return 0, 0, fmt.Errorf("%#x has too few bits: Brindle needs at least 4, the lowest 3 contiguous", mask)
	}
	return pass, class, nil
}

// paramByKey finds a parameter by its lower-cased name.
func paramByKey(key string) (param, bool) {
	for _, p := range params {
		if strings.EqualFold(p.name, key) {
			return p, true
		}
	}
	return param{}, false
}

// Layer is one source of parameters: a name for messages ("flags", "env",
// "file /etc/brindle/node.cfg", "FelixConfiguration node.h1") and values
// by parameter name (any case).
type Layer struct {
	Name   string
	Values map[string]string
}

func (l Layer) get(name string) (string, bool) {
	for k, v := range l.Values {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// Resolved is the outcome of Resolve: the parameters and, for each, the
// layer it came from ("default" for built-in defaults).
type Resolved struct {
	Params  Params
	Sources map[string]string
}

// Resolve merges layers, highest precedence first, over the built-in
// defaults. The agent passes, in order: flags, environment, config file,
// FelixConfiguration node.<hostname>, FelixConfiguration default (compat
// §6.4). An unknown name in a local layer is an error (a typo should not
// be silently ignored); a value that does not parse is an error naming the
// parameter and the layer.
func Resolve(layers ...Layer) (Resolved, error) {
	r := Resolved{Sources: map[string]string{}}
	var errs []error
	for _, l := range layers {
		for k := range l.Values {
			if _, ok := paramByKey(k); !ok {
				errs = append(errs, fmt.Errorf("%s: unknown parameter %q", l.Name, k))
			}
		}
	}
	for _, p := range params {
		v, src := p.def, "default"
		for _, l := range layers {
			if lv, ok := l.get(p.name); ok {
				v, src = lv, l.Name
				break
			}
		}
		if err := p.set(&r.Params, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %q: %w", src, p.name, v, err))
			continue
		}
		r.Sources[p.name] = src
	}
	if err := errors.Join(errs...); err != nil {
		return Resolved{}, err
	}
	return r, nil
}

// RestartNeeded names the restart-required parameters whose values differ
// between a and b (empty when none do).
func RestartNeeded(a, b Params) []string {
	var out []string
	if !slices.Equal(a.InterfacePrefix, b.InterfacePrefix) {
		out = append(out, ParamInterfacePrefix)
	}
	if a.HealthEnabled != b.HealthEnabled || a.HealthHost != b.HealthHost || a.HealthPort != b.HealthPort {
		out = append(out, "Health*")
	}
	if a.PrometheusMetricsEnabled != b.PrometheusMetricsEnabled || a.PrometheusMetricsHost != b.PrometheusMetricsHost ||
		a.PrometheusMetricsPort != b.PrometheusMetricsPort {
		out = append(out, "PrometheusMetrics*")
	}
	if a.IptablesMarkMask != b.IptablesMarkMask {
		out = append(out, ParamIptablesMarkMask)
	}
	return out
}

// FelixConfigLayer turns a stored FelixConfiguration's spec into a layer
// holding the parameters it sets. Datastore layers never carry
// connection parameters or the hostname: those are local-only (compat
// §6.4), and the spec has no fields for them.
func FelixConfigLayer(name string, s *api.FelixConfigurationSpec) Layer {
	l := Layer{Name: "FelixConfiguration " + name, Values: map[string]string{}}
	if s == nil {
		return l
	}
	put := func(k, v string) {
		if v != "" {
			l.Values[k] = v
		}
	}
	put(ParamInterfacePrefix, s.InterfacePrefix)
	put(ParamDefaultEndpointToHostAction, s.DefaultEndpointToHostAction)
	if s.HealthEnabled != nil {
		put(ParamHealthEnabled, strconv.FormatBool(*s.HealthEnabled))
	}
	if s.HealthHost != nil {
		put(ParamHealthHost, *s.HealthHost)
	}
	if s.HealthPort != nil {
		put(ParamHealthPort, strconv.Itoa(*s.HealthPort))
	}
	if s.PrometheusMetricsEnabled != nil {
		put(ParamPrometheusMetricsEnabled, strconv.FormatBool(*s.PrometheusMetricsEnabled))
	}
	put(ParamPrometheusMetricsHost, s.PrometheusMetricsHost)
	if s.PrometheusMetricsPort != nil {
		put(ParamPrometheusMetricsPort, strconv.Itoa(*s.PrometheusMetricsPort))
	}
	if s.RouteRefreshInterval != nil {
		put(ParamRouteRefreshInterval, s.RouteRefreshInterval.Duration.String())
	}
	if s.NFTablesRefreshInterval != nil {
		put(ParamNftablesRefreshInterval, s.NFTablesRefreshInterval.Duration.String())
	}
	put(ParamLogSeverityScreen, s.LogSeverityScreen)
	if s.IptablesMarkMask != nil {
		put(ParamIptablesMarkMask, fmt.Sprintf("%#x", *s.IptablesMarkMask))
	}
	return l
}

// EnvLayer picks the parameters out of an environment (os.Environ form):
// FELIX_<UPPERNAME> as Felix reads them, and BRINDLE_<UPPERNAME>, which wins
// over FELIX_ when both are set. Other variables are ignored.
func EnvLayer(environ []string) Layer {
	l := Layer{Name: "environment", Values: map[string]string{}}
	felix := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for _, pre := range []string{"BRINDLE_", "FELIX_"} {
			name, found := strings.CutPrefix(k, pre)
			if !found {
				continue
			}
			p, ok := paramByKey(name)
			if !ok {
				continue
			}
			if pre == "BRINDLE_" {
				l.Values[p.name] = v
			} else {
				felix[p.name] = v
			}
		}
	}
	for k, v := range felix {
		if _, ok := l.Values[k]; !ok {
			l.Values[k] = v
		}
	}
	return l
}

// ParseConfigFile reads Felix's config file format: INI with a [global]
// section of Name = value lines; '#' and ';' start comments. Sections
// other than [global] are ignored, as Felix does. Errors name the line.
func ParseConfigFile(name string, data []byte) (Layer, error) {
	l := Layer{Name: "config file " + name, Values: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	section := ""
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return Layer{}, fmt.Errorf("%s:%d: unterminated section header", name, n)
			}
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Layer{}, fmt.Errorf("%s:%d: want Name = value", name, n)
		}
		if section != "global" {
			continue
		}
		k = strings.TrimSpace(k)
		if _, known := paramByKey(k); !known {
			return Layer{}, fmt.Errorf("%s:%d: unknown parameter %q", name, n, k)
		}
		l.Values[k] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return Layer{}, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

func parsePrefixes(s string) ([]string, error) {
	var out []string
	for i, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || len(p) > desired.MaxInterfaceNameLen-1 || strings.ContainsAny(p, "/ \t:") {
			return nil, fmt.Errorf("entry %d %q must be 1-%d bytes without '/', ':' or spaces", i, p, desired.MaxInterfaceNameLen-1)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseEndpointToHost(s string) (desired.EndpointToHostAction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "drop":
		return desired.EndpointToHostDrop, nil
	case "accept":
		return desired.EndpointToHostAccept, nil
	case "return":
		return desired.EndpointToHostReturn, nil
	}
	return 0, errors.New("want Drop, Accept or Return")
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "y", "t":
		return true, nil
	case "false", "0", "no", "n", "f":
		return false, nil
	}
	return false, errors.New("want true or false")
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 65535 {
		return 0, errors.New("want a port number 0-65535")
	}
	return n, nil
}

// parseInterval accepts a Go duration ("90s", "1m30s") or, as Felix's
// environment does, a number of seconds ("90").
func parseInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, errors.New("must not be negative")
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration like 90s or a number of seconds")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// ParseSeverity maps Felix's log severities (Debug, Info, Warning, Error,
// Fatal, Panic; any case) to slog levels.
func ParseSeverity(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug", "trace":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error", "fatal", "panic":
		return slog.LevelError, nil
	}
	return 0, errors.New("want Debug, Info, Warning, Error, Fatal or Panic")
}
