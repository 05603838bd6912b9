package ctl_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/google/go-cmp/cmp"
)

// brindlectl is the binary under test, built once by TestMain.
var brindlectl string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "brindlectl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	brindlectl = filepath.Join(dir, "brindlectl")
	out, err := exec.Command("go", "build", "-o", brindlectl, "github.com/brindle-net/brindle/cmd/brindlectl").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building brindlectl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// ctl runs brindlectl against endpoint with args; stdin may be empty.
func ctl(t *testing.T, endpoint, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(brindlectl, args...)
	cmd.Env = append(os.Environ(), "BRINDLE_ETCD_ENDPOINTS="+endpoint)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const policies = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-tcp-6379
spec:
  selector: role == 'database'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: role == 'frontend'}
    destination: {ports: [6379]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: prod
spec:
  podSelector: {}
---
apiVersion: v1
kind: policy
metadata:
  name: old-style
spec:
  selector: role == 'x'
  ingress:
  - action: allow
    protocol: tcp
`

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func TestApplyGetLabelDelete(t *testing.T) {
	ep := datastoretest.New(t).Endpoints[0]
	file := writeFile(t, t.TempDir(), "p.yaml", policies)

	r := ctl(t, ep, "", "apply", "-f", file)
	want := []string{
		"globalnetworkpolicy.projectcalico.org/allow-tcp-6379 created",
		"networkpolicy.networking.k8s.io/deny-all created",
		"globalnetworkpolicy.projectcalico.org/old-style created",
	}
	if r.code != 0 || !cmp.Equal(want, lines(r.stdout)) {
		t.Fatalf("apply: code %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = ctl(t, ep, "", "apply", "-f", file)
	if r.code != 0 || !strings.Contains(r.stdout, "allow-tcp-6379 unchanged") {
		t.Fatalf("re-apply: %+v", r)
	}

	// Kinds are case-insensitive with aliases.
	for _, k := range []string{"gnp", "GlobalNetworkPolicy", "globalnetworkpolicies", "GNPS"} {
		r = ctl(t, ep, "", "get", k)
		if r.code != 0 || !regexpLine(r.stdout, `^NAME\s+TIER\s+ORDER\s+SELECTOR$`) || !regexpLine(r.stdout, `^allow-tcp-6379\s+default\s+<none>\s+role == 'database'$`) {
			t.Fatalf("get %s: %+v", k, r)
		}
	}
	// The translation of the Kubernetes policy is a NetworkPolicy.
	r = ctl(t, ep, "", "get", "networkpolicy", "-A", "-o", "name")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "networkpolicy.projectcalico.org/knp.default.deny-all" {
		t.Fatalf("get np -A -o name: %+v", r)
	}
	r = ctl(t, ep, "", "get", "np", "-n", "prod", "-o", "wide")
	if r.code != 0 || !regexpLine(r.stdout, `^knp.default.deny-all\s+default\s+1000\s+.*Ingress`) {
		t.Fatalf("get np -o wide: %+v", r)
	}
	r = ctl(t, ep, "", "get", "gnp", "allow-tcp-6379", "-o", "yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "kind: GlobalNetworkPolicy") || !strings.Contains(r.stdout, "resourceVersion:") || strings.Contains(r.stdout, "List") {
		t.Fatalf("get -o yaml: %+v", r)
	}
	r = ctl(t, ep, "", "get", "gnp", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"kind": "GlobalNetworkPolicyList"`) {
		t.Fatalf("get -o json: %+v", r)
	}

	r = ctl(t, ep, "", "label", "gnp", "allow-tcp-6379", "team=db")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "globalnetworkpolicy.projectcalico.org/allow-tcp-6379 labeled" {
		t.Fatalf("label: %+v", r)
	}
	r = ctl(t, ep, "", "label", "gnp", "allow-tcp-6379", "team=web")
	if r.code != 1 || !strings.Contains(r.stderr, "--overwrite") {
		t.Fatalf("label without --overwrite: %+v", r)
	}
	r = ctl(t, ep, "", "label", "gnp", "allow-tcp-6379", "team=web", "--overwrite")
	if r.code != 0 {
		t.Fatalf("label --overwrite: %+v", r)
	}
	r = ctl(t, ep, "", "get", "gnp", "allow-tcp-6379", "-o", "yaml")
	if !strings.Contains(r.stdout, "team: web") {
		t.Fatalf("label not stored: %s", r.stdout)
	}

	r = ctl(t, ep, "", "delete", "gnp", "old-style", "missing")
	if r.code != 1 || !strings.Contains(r.stderr, `globalnetworkpolicy.projectcalico.org/missing: not found`) {
		t.Fatalf("delete with a missing name: %+v", r)
	}
	r = ctl(t, ep, "", "delete", "-f", file)
	if r.code != 0 || len(lines(r.stdout)) != 3 || !strings.Contains(r.stdout, "deny-all deleted") {
		t.Fatalf("delete -f: %+v", r)
	}
	r = ctl(t, ep, "", "get", "np", "-A")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "" || !strings.Contains(r.stderr, "No resources found") {
		t.Fatalf("get after delete: %+v", r)
	}
}

// regexpLine reports whether some line of out matches pattern.
func regexpLine(out, pattern string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(out)
}

func TestBadDocumentWritesNothing(t *testing.T) {
	ep := datastoretest.New(t).Endpoints[0]
	file := writeFile(t, t.TempDir(), "bad.yaml", `apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: t1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec:
  ingress:
  - action: Allowed
`)
	r := ctl(t, ep, "", "apply", "-f", file)
	if r.code != 1 || !strings.HasPrefix(r.stderr, `error: document 2 (GlobalNetworkPolicy "x"): spec.ingress[0].action:`) {
		t.Fatalf("apply of a bad file: %+v", r)
	}
	r = ctl(t, ep, "", "get", "tiers", "-o", "name")
	if strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("a document of the bad file was written: %q", r.stdout)
	}
	// validate reports the same without a datastore.
	r = ctl(t, "http://127.0.0.1:1", "", "validate", "-f", file)
	if r.code != 1 || !strings.Contains(r.stderr, "spec.ingress[0].action") {
		t.Fatalf("validate: %+v", r)
	}
}

func TestCreateReplaceStdinAndDirectories(t *testing.T) {
	ep := datastoretest.New(t).Endpoints[0]
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n")
	writeFile(t, dir, "sub/b.json", `{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pool1"}, "spec": {"cidr": "10.0.0.0/16"}}`)
	writeFile(t, dir, "README.txt", "not a resource")

	r := ctl(t, ep, "", "create", "-f", dir)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "tier.projectcalico.org/security created" {
		t.Fatalf("create -f DIR (not recursive): %+v", r)
	}
	r = ctl(t, ep, "", "create", "-f", dir, "-R")
	if r.code != 1 || !strings.Contains(r.stderr, `(Tier "security"): already exists`) {
		t.Fatalf("create of an existing tier: %+v", r)
	}
	r = ctl(t, ep, "", "get", "ippools", "-o", "name")
	if strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("failed create wrote the pool: %+v", r)
	}
	r = ctl(t, ep, "", "apply", "-R", "-f", dir)
	if r.code != 0 || !cmp.Equal(lines(r.stdout), []string{"tier.projectcalico.org/security unchanged", "ippool.projectcalico.org/pool1 created"}) {
		t.Fatalf("apply -R: %+v", r)
	}
	r = ctl(t, ep, "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 200}\n", "replace", "-f", "-")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "tier.projectcalico.org/security replaced" {
		t.Fatalf("replace from stdin: %+v", r)
	}
	r = ctl(t, ep, "", "get", "tier", "security")
	if !regexpLine(r.stdout, `^security\s+200\s+Deny$`) {
		t.Fatalf("replaced tier: %+v", r)
	}
	r = ctl(t, ep, "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: nope}\n", "replace", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("replace of a missing tier: %+v", r)
	}
	// -n puts namespaced documents in a namespace; a mismatch is an error.
	np := "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p1}\nspec: {selector: all()}\n"
	r = ctl(t, ep, np, "apply", "-n", "team-a", "-f", "-")
	if r.code != 0 {
		t.Fatalf("apply -n: %+v", r)
	}
	r = ctl(t, ep, "", "get", "np", "p1", "-n", "team-a", "-o", "name")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "networkpolicy.projectcalico.org/p1" {
		t.Fatalf("get -n team-a: %+v", r)
	}
	r = ctl(t, ep, strings.Replace(np, "{name: p1}", "{name: p1, namespace: other}", 1), "apply", "-n", "team-a", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "does not match --namespace") {
		t.Fatalf("namespace mismatch: %+v", r)
	}
}

func TestConnectionSettings(t *testing.T) {
	ep := datastoretest.New(t).Endpoints[0]
	dir := t.TempDir()
	cfg := writeFile(t, dir, "brindlectl.yaml", "apiVersion: projectcalico.org/v3\nkind: BrindleConfig\nspec:\n  etcdEndpoints: "+ep+"\n")

	// The config file alone.
	r := ctl(t, "", "", "get", "tiers", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("--config: %+v", r)
	}
	// A flag beats the environment.
	r = ctl(t, "http://127.0.0.1:1", "", "get", "tiers", "--etcd-endpoints", ep)
	if r.code != 0 {
		t.Fatalf("--etcd-endpoints over env: %+v", r)
	}
	// The environment beats the config file; an unreachable endpoint is named.
	r = ctl(t, "http://127.0.0.1:1", "", "get", "tiers", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "http://127.0.0.1:1") {
		t.Fatalf("env over config, unreachable: %+v", r)
	}
	// A missing explicit config file is an error.
	r = ctl(t, ep, "", "get", "tiers", "--config", filepath.Join(dir, "missing.yaml"))
	if r.code != 1 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Fatalf("missing --config: %+v", r)
	}
	r = ctl(t, ep, "", "get", "nosuchkind")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown resource kind "nosuchkind"`) {
		t.Fatalf("unknown kind: %+v", r)
	}
}
