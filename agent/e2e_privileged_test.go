package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/policy/scenario"
)

// e2ePorts are served by every pod and probed between every pair.
var e2ePorts = []string{"80/TCP", "8080/TCP", "53/UDP"}

const e2ePods = `
namespaces:
  ns1: {labels: {env: prod}}
  ns2: {labels: {env: dev}}
pods:
  - {namespace: ns1, name: a, ip: 10.65.0.1, labels: {app: web}}
  - {namespace: ns1, name: b, ip: 10.65.0.2, labels: {app: db}, ports: [{port: 8080, name: http}]}
  - {namespace: ns2, name: c, ip: 10.65.0.3, labels: {app: web}}
`

// step is one datastore state of the end-to-end test: the policies (and
// pod label overrides) and spot checks that must hold, besides agreeing
// with the reference evaluator on every probe.
type step struct {
	name     string
	labels   map[string]string // pod ID → extra "k=v" label
	policies string
	spots    []spot
}

type spot struct {
	from, to string
	port     string
	allowed  bool
}

func buildStep(t *testing.T, st step) *scenario.Built {
	t.Helper()
	text := e2ePods
	for id, kv := range st.labels {
		ns, name, _ := strings.Cut(id, "/")
		k, v, _ := strings.Cut(kv, "=")
		old := fmt.Sprintf("{namespace: %s, name: %s, ip: ", ns, name)
		i := strings.Index(text, old)
		j := strings.Index(text[i:], "labels: {") + i + len("labels: {")
		text = text[:j] + k + ": " + v + ", " + text[j:]
	}
	if st.policies != "" {
		text += "policies:\n" + st.policies
	}
	s, err := scenario.Parse([]byte("name: " + st.name + "\n" + text))
	if err != nil {
		t.Fatalf("step %s: %v", st.name, err)
	}
	b, err := s.Build()
	if err != nil {
		t.Fatalf("step %s: %v", st.name, err)
	}
	return b
}

// allPairs evaluates every ordered pod pair on every port.
func allPairs(t testing.TB, b *scenario.Built, ports []string) []probeCase {
	var out []probeCase
	for _, from := range b.PodOrder {
		for _, to := range b.PodOrder {
			if from == to {
				continue
			}
			for _, pp := range ports {
				port, proto, err := scenario.ParsePortProtocol(pp)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, evaluate(t, b, from, to, port, strings.ToUpper(proto)))
			}
		}
	}
	return out
}

var e2eSteps = []step{
	{name: "default-allow-by-profile", spots: []spot{{"ns2/c", "ns1/b", "8080/TCP", true}, {"ns1/a", "ns2/c", "53/UDP", true}}},
	{name: "default-deny", policies: `
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: isolate-db}
    spec: {selector: app == 'db', types: [Ingress]}
`, spots: []spot{{"ns1/a", "ns1/b", "80/TCP", false}, {"ns1/a", "ns1/b", "53/UDP", false}, {"ns1/b", "ns1/a", "80/TCP", true}}},
	{name: "order-log-deny-allow", policies: `
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: deny-dev}
    spec:
      order: 10
      selector: app == 'db'
      ingress:
        - action: Log
        - action: Deny
          source: {namespaceSelector: env == 'dev'}
  - apiVersion: projectcalico.org/v3
    kind: NetworkPolicy
    metadata: {name: allow-web, namespace: ns1}
    spec:
      order: 20
      selector: app == 'db'
      ingress:
        - action: Allow
          source: {selector: app == 'web', namespaceSelector: all()}
`, spots: []spot{{"ns1/a", "ns1/b", "80/TCP", true}, {"ns2/c", "ns1/b", "80/TCP", false}}},
	{name: "tiers-pass", policies: `
  - apiVersion: projectcalico.org/v3
    kind: Tier
    metadata: {name: security}
    spec: {order: 10}
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: security.web-passes}
    spec:
      tier: security
      selector: all()
      ingress:
        - action: Pass
          source: {selector: app == 'web'}
        - action: Deny
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: db-8080}
    spec:
      selector: app == 'db'
      ingress:
        - action: Allow
          protocol: TCP
          destination: {ports: [8080]}
`, spots: []spot{{"ns1/a", "ns1/b", "8080/TCP", true}, {"ns1/a", "ns1/b", "80/TCP", false}, {"ns1/b", "ns1/a", "80/TCP", false},
		{"ns2/c", "ns1/a", "53/UDP", true}}},
	{name: "named-port-and-nets", policies: `
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: db-http-from-a}
    spec:
      selector: app == 'db'
      ingress:
        - action: Allow
          protocol: TCP
          source: {nets: [10.65.0.1/32]}
          destination: {ports: [http]}
`, spots: []spot{{"ns1/a", "ns1/b", "8080/TCP", true}, {"ns2/c", "ns1/b", "8080/TCP", false}, {"ns1/a", "ns1/b", "80/TCP", false}}},
	{name: "label-before", policies: clientPolicy, spots: []spot{{"ns1/a", "ns1/b", "80/TCP", false}}},
	{name: "label-after", labels: map[string]string{"ns1/a": "role=client"}, policies: clientPolicy,
		spots: []spot{{"ns1/a", "ns1/b", "80/TCP", true}, {"ns2/c", "ns1/b", "80/TCP", false}}},
	{name: "policy-deleted", labels: map[string]string{"ns1/a": "role=client"},
		spots: []spot{{"ns2/c", "ns1/b", "80/TCP", true}}},
}

const clientPolicy = `
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata: {name: db-from-clients}
    spec:
      selector: app == 'db'
      ingress:
        - action: Allow
          source: {selector: role == 'client'}
`

// setWorld writes w and deletes what the previous world had and w lacks.
func (l *lab) setWorld(prev, w world) {
	l.t.Helper()
	keep := map[string]bool{}
	for _, o := range w.objects {
		keep[objKey(o)] = true
	}
	var gone []api.Object
	for _, o := range prev.objects {
		if !keep[objKey(o)] {
			gone = append(gone, o)
		}
	}
	l.apply(w.objects...)
	if len(gone) > 0 {
		l.delete(gone...)
	}
}

func objKey(o api.Object) string {
	k, _ := api.KindOf(o)
	return k.Kind + "/" + o.GetNamespace() + "/" + o.GetName()
}

func TestPrivilegedAgentEndToEnd(t *testing.T) {
	l := newLab(t)
	var prev world
	for i, st := range e2eSteps {
		b := buildStep(t, st)
		w := worldOf(t, b)
		if i == 0 {
			l.load(w, e2ePorts)
			l.start()
		} else {
			l.setWorld(prev, w)
		}
		prev = w
		l.sync()
		cases := allPairs(t, b, e2ePorts)
		for _, sp := range st.spots {
			port, proto, _ := scenario.ParsePortProtocol(sp.port)
			c := evaluate(t, b, sp.from, sp.to, port, proto)
			if c.want != sp.allowed {
				t.Fatalf("step %s: the evaluator says %s allowed=%v; the test expects %v\n    %s", st.name, c, c.want, sp.allowed, c.explain)
			}
		}
		if wrong := l.check(cases); len(wrong) > 0 {
			t.Errorf("step %s: %d of %d probes disagree with the evaluator:\n  %s", st.name, len(wrong), len(cases), strings.Join(wrong, "\n  "))
		}
	}
	t.Run("sctp", func(t *testing.T) {
		if err := netnstest.SCTPAvailable(l.pods["ns1/a"].NS); err != nil {
			t.Skip(netnstest.ErrSCTPUnavailable.Error())
		}
		l.serve("ns1/b", 9000, "SCTP")
		ok, err := l.probe("ns2/c", "ns1/b", 9000, "SCTP")
		if errors.Is(err, netnstest.ErrSCTPUnavailable) {
			t.Skip(err.Error())
		}
		if err != nil || !ok {
			t.Errorf("SCTP c->b with policy deleted (profile allows): ok=%v err=%v", ok, err)
		}
	})
}

// TestPrivilegedAgentTalkScenario runs the talk's scenario file through the
// agent on real packets, every probe and every pair against the evaluator.
// It runs again with IptablesMarkMask 0x00ff8000 (as a FelixConfiguration
// would set it): the dataplane's pass bit and class field move there, and
// the verdicts stay the same.
func TestPrivilegedAgentTalkScenario(t *testing.T) {
	t.Run("default marks", func(t *testing.T) { t.Parallel(); talkScenario(t, nil) })
	t.Run("IptablesMarkMask 0x00ff8000", func(t *testing.T) {
		t.Parallel()
		l := talkScenario(t, map[string]string{ParamIptablesMarkMask: "0x00ff8000"})
		out, err := exec.Command("nsenter", "--net="+l.host.Path(), "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset: %v\n%s", err, out)
		}
		for _, want := range []string{"meta mark & 0x007f8000 vmap", "meta mark set meta mark & 0xff7fffff", "meta mark set meta mark & 0xff807fff"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("ruleset lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(string(out), "0x02000000") {
			t.Errorf("the default pass bit is still used:\n%s", out)
		}
	})
}

func talkScenario(t *testing.T, params map[string]string) *lab {
	data, err := os.ReadFile("../testdata/scenarios/talk-allow-tcp-6379.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Build()
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t)
	ports := []string{"6379/TCP", "80/TCP", "6379/UDP"}
	l.load(worldOf(t, b), ports)
	l.start(Layer{Name: "flags", Values: params})
	l.sync()
	var cases []probeCase
	for _, p := range s.Probes {
		c := evaluate(t, b, p.From, p.To, p.Port, p.Protocol)
		if p.Allowed == nil || *p.Allowed != c.want {
			t.Fatalf("the scenario file and the evaluator disagree on %s", c)
		}
		cases = append(cases, c)
	}
	cases = append(cases, allPairs(t, b, ports)...)
	if wrong := l.check(cases); len(wrong) > 0 {
		t.Errorf("%d of %d probes disagree:\n  %s", len(wrong), len(cases), strings.Join(wrong, "\n  "))
	}
	return l
}

// TestPrivilegedAgentRestart: an established connection survives an agent
// restart, and the restarted agent, before it is in sync (the datastore is
// down), leaves the programmed policy alone.
func TestPrivilegedAgentRestart(t *testing.T) {
	l := newLab(t)
	st := e2eSteps[2] // a→b allowed, c→b denied
	b := buildStep(t, st)
	l.load(worldOf(t, b), e2ePorts)
	l.start()
	l.sync()

	// A long-lived TCP connection a→b:80.
	var conn net.Conn
	err := l.pods["ns1/a"].Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "10.65.0.2:80", time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial a->b:80: %v", err)
	}
	defer conn.Close()
	echo := func(when string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte{'x'}); err != nil {
			t.Fatalf("%s: write on the established connection: %v", when, err)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatalf("%s: echo on the established connection: %v", when, err)
		}
	}
	echo("before restart")
	policyHolds := func(when string) {
		t.Helper()
		cases := []probeCase{
			{from: "ns1/a", to: "ns1/b", port: 80, proto: "TCP", want: true},
			{from: "ns2/c", to: "ns1/b", port: 80, proto: "TCP", want: false},
		}
		if wrong := l.check(cases); len(wrong) > 0 {
			t.Fatalf("%s: %s", when, strings.Join(wrong, "; "))
		}
	}

	if err := l.agent.stop(); err != nil {
		t.Fatal(err)
	}
	// The new agent's client connects, then the datastore goes down: the
	// agent cannot get in sync and must not touch the kernel.
	client := l.etcd.Connect(datastore.Config{})
	l.etcd.Stop()
	a2, err := New(Config{Hostname: labHost, Datastore: client, Netns: l.host.Path(), SocketPath: l.sock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r2 := &runningAgent{a: a2, cancel: cancel, done: make(chan error, 1)}
	go func() { r2.done <- a2.Run(ctx) }()
	l.agent = r2
	time.Sleep(300 * time.Millisecond)
	if st := a2.Status(); st.InSync {
		t.Fatalf("agent in sync with the datastore down: %+v", st)
	}
	echo("restarted agent, datastore down")
	policyHolds("restarted agent, datastore down")

	l.etcd.Restart()
	l.sync()
	echo("after in-sync")
	policyHolds("after in-sync")
}

// TestPrivilegedAgentDatastoreNotReady: with ClusterInformation
// datastoreReady: false the agent gets in sync but touches nothing (no
// table, no routes); once ready it programs; paused again, a policy
// deletion does not reach the kernel until the flag is true again.
func TestPrivilegedAgentDatastoreNotReady(t *testing.T) {
	l := newLab(t)
	b := buildStep(t, e2eSteps[2]) // a→b allowed, c→b denied
	w := worldOf(t, b)
	info := func(ready bool) api.Object {
		return objects(t, fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata: {name: default}\nspec: {datastoreReady: %t}\n", ready))[0]
	}
	l.apply(info(false))
	l.load(w, e2ePorts)
	l.start()
	deadline := time.Now().Add(20 * time.Second)
	for st := l.agent.a.Status(); !st.InSync || !st.DatastoreNotReady; st = l.agent.a.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("agent not in sync and paused: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	out, err := exec.Command("nsenter", "--net="+l.host.Path(), "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "brindle") {
		t.Fatalf("paused agent created its table:\n%s", out)
	}
	routes, err := l.host.Handle().RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Protocol == 98 {
			t.Fatalf("paused agent wrote route %s", r)
		}
	}
	if st := l.agent.a.Status(); st.Applies != 0 || st.Programmed {
		t.Fatalf("paused agent status: %+v", st)
	}

	l.apply(info(true))
	l.sync()
	denied := []probeCase{
		{from: "ns1/a", to: "ns1/b", port: 80, proto: "TCP", want: true},
		{from: "ns2/c", to: "ns1/b", port: 80, proto: "TCP", want: false},
	}
	if wrong := l.check(denied); len(wrong) > 0 {
		t.Fatalf("after ready: %s", strings.Join(wrong, "; "))
	}

	// Paused again: deleting the policies changes nothing in the kernel.
	l.apply(info(false))
	l.setWorld(w, worldOf(t, buildStep(t, e2eSteps[0])))
	time.Sleep(300 * time.Millisecond)
	if wrong := l.check(denied); len(wrong) > 0 {
		t.Fatalf("paused, policies deleted: the kernel changed: %s", strings.Join(wrong, "; "))
	}
	l.apply(info(true))
	l.sync()
	allowed := []probeCase{{from: "ns2/c", to: "ns1/b", port: 80, proto: "TCP", want: true}}
	if wrong := l.check(allowed); len(wrong) > 0 {
		t.Fatalf("ready again, policies deleted: %s", strings.Join(wrong, "; "))
	}
}
