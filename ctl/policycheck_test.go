package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/policy/scenario"
)

// runCtl runs brindlectl in-process and returns its output and exit code.
func runCtl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	opts := &Options{
		Streams: Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	root := NewRootCommand(opts)
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	if err != nil {
		code = 1
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		out.WriteString("error: " + err.Error() + "\n")
	}
	return out.String(), code
}

// TestPolicyCheckScenarios runs every scenario in testdata/scenarios; every
// probe there carries the expectation derived by hand from Calico and
// Kubernetes semantics, so each must exit 0.
func TestPolicyCheckScenarios(t *testing.T) {
	files, err := filepath.Glob("../testdata/scenarios/*.yaml")
	if err != nil || len(files) < 25 {
		t.Fatalf("want at least 25 scenarios, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, code := runCtl(t, "policy", "check", "-f", f)
			if code != 0 {
				t.Fatalf("exit %d, want 0:\n%s", code, out)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := scenario.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range append(sc.Probes, sc.ExternalProbes...) {
				if p.Allowed == nil {
					t.Errorf("probe %d (%s -> %s) has no expectation", i, p.From, p.To)
				}
			}
		})
	}
}

func TestPolicyCheckBadScenarios(t *testing.T) {
	tests := []struct {
		file     string
		wantCode int
		wantOut  string
	}{
		{"wrong-expectation.yaml", 1, "expected allowed, got denied"},
		{"wrong-expectation-external.yaml", 1, "expected denied, got allowed"},
		{"invalid-yaml.yaml", 2, "scenario:"},
		{"invalid-selector.yaml", 2, "spec.selector"},
		{"unknown-pod.yaml", 2, `probes[0]: to "x/nope" is not a pod of the scenario`},
		{"unknown-field.yaml", 2, "unknown field"},
		{"missing-tier.yaml", 2, `tier "security" does not exist`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			out, code := runCtl(t, "policy", "check", "-f", filepath.Join("../testdata/scenarios-bad", tc.file))
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.wantCode, out)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out)
			}
		})
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"policy", "check"}, 2, "-f SCENARIO is required"},
		{[]string{"policy", "check", "-f", "../testdata/scenarios/k8s-deny-all.yaml", "-o", "xml"}, 2, `-o "xml"`},
		{[]string{"policy", "check", "-f", "/nonexistent.yaml"}, 2, "no such file"},
		{[]string{"policy", "check", "-f", "../testdata/scenarios/k8s-deny-all.yaml", "--explain", "x/a"}, 2, "exactly FROM TO PORT/PROTOCOL"},
		{[]string{"policy", "check", "-f", "../testdata/scenarios/k8s-deny-all.yaml", "x/a"}, 2, "did you mean --explain"},
	}
	for _, tc := range tests {
		out, code := runCtl(t, tc.args...)
		if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
			t.Errorf("%v: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out, tc.wantCode, tc.wantOut)
		}
	}
}

func TestPolicyCheckExplain(t *testing.T) {
	out, code := runCtl(t, "policy", "check", "-f", "../testdata/scenarios/k8s-deny-all.yaml", "--explain", "x/a", "x/b", "80/TCP")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"x/a -> x/b 80/TCP",
		"DENIED",
		`ingress x/b: denied by end of tier "default" (policy knp.default.deny-all selected the endpoint, no rule matched)`,
		`egress x/a: allowed by profile "kns.x" egress rule 0 (no policy selected the endpoint)`,
		`end of tier: default action Deny`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	out, code := runCtl(t, "policy", "check", "-o", "json", "-f", "../testdata/scenarios-bad/wrong-expectation.yaml")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	out = out[:strings.LastIndex(out, "error:")]
	var doc struct {
		Total, Wrong int
		Probes       []struct {
			From, To string
			Allowed  bool
			Wrong    bool
			Reason   string
			Ingress  struct {
				Reason string
				Tier   string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if doc.Wrong != 1 || doc.Total != 2 {
		t.Fatalf("total %d wrong %d, want 2 and 1:\n%s", doc.Total, doc.Wrong, out)
	}
	p := doc.Probes[0]
	if !p.Wrong || p.Allowed || p.Ingress.Reason != "TierDefault" || p.Ingress.Tier != "default" {
		t.Errorf("first probe = %+v, want a wrong, denied probe decided by the default tier's end", p)
	}
}
