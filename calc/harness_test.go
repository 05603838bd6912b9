package calc

import (
	"bufio"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/states/*.txt")

// A states file is a sequence of named datastore states, each a full set
// of objects, with the rendered desired state expected once calc has seen
// exactly that state:
//
//	# comment
//	hostname host-1            (optional; default host-1)
//	=== state <name>
//	<objects: YAML documents, and shorthand lines (see parseShorthand)>
//	=== expect
//	<render output>
//
// TestStates runs each file through every variant of statesVariants: the
// output after each state must be the expected one whatever path led there.

type stateDef struct {
	name   string
	objs   map[string]Update // by key
	keys   []string          // in file order
	expect string
}

type statesFile struct {
	path     string
	hostname string
	states   []*stateDef
	// lines keeps the file for -rewrite: text before each expect block
	// and the index of the state whose expect follows.
	chunks []string
}

const (
	stateMarker  = "=== state "
	expectMarker = "=== expect"
)

func parseStatesFile(path string) (*statesFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &statesFile{path: path, hostname: "host-1"}
	var cur *stateDef
	var body, expect, chunk strings.Builder
	inExpect := false
	finish := func() error {
		if cur == nil {
			return nil
		}
		if !inExpect {
			return fmt.Errorf("%s: state %q has no %q block", path, cur.name, expectMarker)
		}
		if err := cur.addObjects(body.String()); err != nil {
			return fmt.Errorf("%s: state %q: %w", path, cur.name, err)
		}
		cur.expect = strings.TrimRight(expect.String(), "\n") + "\n"
		f.states = append(f.states, cur)
		body.Reset()
		expect.Reset()
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, stateMarker):
			if err := finish(); err != nil {
				return nil, err
			}
			cur = &stateDef{name: strings.TrimSpace(strings.TrimPrefix(line, stateMarker)), objs: map[string]Update{}}
			inExpect = false
			chunk.WriteString(line + "\n")
		case line == expectMarker:
			if cur == nil || inExpect {
				return nil, fmt.Errorf("%s: misplaced %q", path, expectMarker)
			}
			inExpect = true
			chunk.WriteString(line + "\n")
			f.chunks = append(f.chunks, chunk.String())
			chunk.Reset()
		case inExpect:
			expect.WriteString(line + "\n")
		case cur == nil:
			if h, ok := strings.CutPrefix(line, "hostname "); ok {
				f.hostname = strings.TrimSpace(h)
			}
			chunk.WriteString(line + "\n")
		default:
			body.WriteString(line + "\n")
			chunk.WriteString(line + "\n")
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if len(f.states) == 0 {
		return nil, fmt.Errorf("%s: no states", path)
	}
	return f, nil
}

func (f *statesFile) rewriteWith(outputs []string) error {
	var b strings.Builder
	for i, c := range f.chunks {
		b.WriteString(c)
		b.WriteString(outputs[i])
		if i < len(f.chunks)-1 {
			b.WriteString("\n")
		}
	}
	return os.WriteFile(f.path, []byte(b.String()), 0o644)
}

func (s *stateDef) add(u Update) error {
	key := u.Kind + "/" + joinName(u.Namespace, u.Name)
	if _, dup := s.objs[key]; dup {
		return fmt.Errorf("%s appears twice", key)
	}
	s.objs[key] = u
	s.keys = append(s.keys, key)
	return nil
}

func (s *stateDef) addObjects(text string) error {
	var yaml strings.Builder
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") && !strings.HasPrefix(line, " ") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 0 && !strings.HasPrefix(line, " ") {
			switch fields[0] {
			case "pod", "namespace", "sa":
				us, err := parseShorthand(fields)
				if err != nil {
					return fmt.Errorf("line %d: %w", i+1, err)
				}
				for _, u := range us {
					if err := s.add(u); err != nil {
						return err
					}
				}
				continue
			}
		}
		yaml.WriteString(line + "\n")
	}
	if strings.TrimSpace(yaml.String()) == "" {
		return nil
	}
	objs, err := api.DecodeDocuments([]byte(yaml.String()))
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if knp, ok := obj.(*networkingv1.NetworkPolicy); ok {
			if knp.Namespace == "" {
				knp.Namespace = "default"
			}
			np, err := api.TranslateNetworkPolicy(knp)
			if err != nil {
				return err
			}
			obj = np
		}
		info, ok := api.KindOf(obj)
		if !ok {
			return fmt.Errorf("%T has no kind", obj)
		}
		if info.Namespaced && obj.GetNamespace() == "" {
			obj.SetNamespace("default")
		}
		api.Default(obj)
		if err := api.Validate(obj); err != nil {
			return err
		}
		if err := s.add(Update{Kind: info.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Object: obj}); err != nil {
			return err
		}
	}
	return nil
}

// parseShorthand reads the compact forms:
//
//	pod <ns>/<name> ip=<a>[,<b>] [node=<host>] [iface=<if>] [labels=k=v,...] [sa=<sa>] [ports=<name>:<proto>:<port>,...] [profiles=p,...]
//	namespace <name> [labels=k=v,...]        (the kns.<name> and ksa.<name>.default profiles)
//	sa <ns>/<name> [labels=k=v,...]           (the ksa.<ns>.<name> profile)
//
// A pod is a WorkloadEndpoint as the CNI plugin writes it for Kubernetes:
// orchestrator k8s, profiles kns.<ns> and ksa.<ns>.<sa>, node host-1 and
// interface "cali" + name unless given.
func parseShorthand(fields []string) ([]Update, error) {
	opts := map[string]string{}
	for _, f := range fields[2:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", f)
		}
		opts[k] = v
	}
	if len(fields) < 2 {
		return nil, fmt.Errorf("%s needs a name", fields[0])
	}
	labels := func() map[string]string {
		if opts["labels"] == "" {
			return nil
		}
		m := map[string]string{}
		for _, kv := range strings.Split(opts["labels"], ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return m
	}
	switch fields[0] {
	case "namespace":
		kns := api.NamespaceProfile(fields[1], labels())
		ksa := api.ServiceAccountProfile(fields[1], "default", nil)
		return []Update{
			{Kind: KindProfile, Name: kns.Name, Object: kns},
			{Kind: KindProfile, Name: ksa.Name, Object: ksa},
		}, nil
	case "sa":
		ns, name, ok := strings.Cut(fields[1], "/")
		if !ok {
			return nil, fmt.Errorf("sa %q is not ns/name", fields[1])
		}
		p := api.ServiceAccountProfile(ns, name, labels())
		return []Update{{Kind: KindProfile, Name: p.Name, Object: p}}, nil
	}
	ns, name, ok := strings.Cut(fields[1], "/")
	if !ok {
		return nil, fmt.Errorf("pod %q is not ns/name", fields[1])
	}
	sa := cmpOr(opts["sa"], "default")
	w := &api.WorkloadEndpoint{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: KindWorkloadEndpoint},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels()},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator:       api.OrchestratorKubernetes,
			Node:               cmpOr(opts["node"], "host-1"),
			Pod:                name,
			Endpoint:           "eth0",
			ServiceAccountName: sa,
			InterfaceName:      cmpOr(opts["iface"], "cali"+name),
			Profiles:           []string{api.NamespaceProfilePrefix + ns, api.ServiceAccountProfilePrefix + ns + "." + sa},
		},
	}
	if p, ok := opts["profiles"]; ok {
		w.Spec.Profiles = strings.Split(p, ",")
		if p == "" {
			w.Spec.Profiles = nil
		}
	}
	for _, ip := range strings.Split(opts["ip"], ",") {
		if ip != "" {
			if !strings.Contains(ip, "/") {
				if strings.Contains(ip, ":") {
					ip += "/128"
				} else {
					ip += "/32"
				}
			}
			w.Spec.IPNetworks = append(w.Spec.IPNetworks, ip)
		}
	}
	if opts["ports"] != "" {
		for _, p := range strings.Split(opts["ports"], ",") {
			parts := strings.Split(p, ":")
			if len(parts) != 3 {
				return nil, fmt.Errorf("port %q is not name:proto:port", p)
			}
			var n uint16
			if _, err := fmt.Sscan(parts[2], &n); err != nil {
				return nil, fmt.Errorf("port %q: %w", p, err)
			}
			w.Spec.Ports = append(w.Spec.Ports, api.WorkloadEndpointPort{Name: parts[0], Protocol: api.ProtocolFromString(parts[1]), Port: n})
		}
	}
	return []Update{{Kind: KindWorkloadEndpoint, Namespace: ns, Name: name, Object: w}}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runner drives one Calc through a path of states, checking each.
type runner struct {
	t    *testing.T
	f    *statesFile
	c    *Calc
	cur  map[string]Update
	rng  *rand.Rand // nil: updates in file order
	prev []snapshot
}

type snapshot struct {
	text  string
	state func() string
}

func newRunner(t *testing.T, f *statesFile, rng *rand.Rand) *runner {
	return &runner{t: t, f: f, c: New(Config{Hostname: f.hostname}), cur: map[string]Update{}, rng: rng}
}

// moveTo sends the updates that turn the current state into s: deletes for
// keys s lacks, the object for every key s has (unchanged ones too: a
// repeated update must change nothing). With a random source it shuffles
// them and adds spurious deletes of absent keys.
func (r *runner) moveTo(s *stateDef, reverseKVs bool) string {
	var us []Update
	for _, key := range slices.Sorted(maps.Keys(r.cur)) {
		if _, ok := s.objs[key]; !ok {
			u := r.cur[key]
			us = append(us, Update{Kind: u.Kind, Namespace: u.Namespace, Name: u.Name})
		}
	}
	for _, key := range s.keys {
		us = append(us, s.objs[key])
	}
	if reverseKVs {
		slices.Reverse(us)
	}
	if r.rng != nil {
		for _, key := range s.keys {
			if _, ok := r.cur[key]; !ok && r.rng.IntN(3) == 0 {
				u := s.objs[key]
				us = append(us, Update{Kind: u.Kind, Namespace: u.Namespace, Name: u.Name})
				us = append(us, u) // the delete must come before the object
			}
		}
		// Shuffle, but keep each key's updates in order.
		perm := r.rng.Perm(len(us))
		byKey := map[string][]Update{}
		var order []string
		for _, u := range us {
			k := u.Kind + "/" + joinName(u.Namespace, u.Name)
			byKey[k] = append(byKey[k], u)
		}
		for _, i := range perm {
			u := us[i]
			order = append(order, u.Kind+"/"+joinName(u.Namespace, u.Name))
		}
		us = us[:0]
		for _, k := range order {
			us = append(us, byKey[k][0])
			byKey[k] = byKey[k][1:]
		}
	}
	for _, u := range us {
		if err := r.c.OnUpdate(u); err != nil {
			r.t.Fatalf("state %q: OnUpdate(%s %s): %v", s.name, u.Kind, joinName(u.Namespace, u.Name), err)
		}
	}
	r.cur = s.objs
	st := r.c.State()
	if err := st.Validate(); err != nil {
		r.t.Errorf("state %q: desired state does not validate: %v", s.name, err)
	}
	describe := map[string]string{}
	for id := range st.IPSets.All() {
		describe[id], _ = r.c.DescribeIPSet(id)
	}
	text := render(&st, func(id string) string { return describe[id] })
	// Snapshots handed out earlier must not change.
	for _, p := range r.prev {
		if got := p.state(); got != p.text {
			r.t.Errorf("state %q: an earlier State changed after later updates:\n%s", s.name, cmp.Diff(p.text, got))
		}
	}
	r.prev = append(r.prev, snapshot{text: text, state: func() string { return render(&st, func(id string) string { return describe[id] }) }})
	if len(r.prev) > 4 {
		r.prev = r.prev[1:]
	}
	return text
}

// variant is one path through a file's states.
type variant struct {
	name string
	run  func(t *testing.T, f *statesFile, check func(*stateDef, string))
}

var empty = &stateDef{name: "(empty)", objs: map[string]Update{}}

func statesVariants() []variant {
	vs := []variant{
		{"forward", func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			r := newRunner(t, f, nil)
			for _, s := range f.states {
				check(s, r.moveTo(s, false))
			}
		}},
		{"forward-reversed-kvs", func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			r := newRunner(t, f, nil)
			for _, s := range f.states {
				check(s, r.moveTo(s, true))
			}
		}},
		{"reversed", func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			r := newRunner(t, f, nil)
			for _, s := range slices.Backward(f.states) {
				check(s, r.moveTo(s, false))
			}
		}},
		{"empties-between", func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			emptyText := newRunner(t, f, nil).moveTo(empty, false)
			r := newRunner(t, f, nil)
			for i, s := range f.states {
				check(s, r.moveTo(s, false))
				if got := r.moveTo(empty, i%2 == 1); got != emptyText {
					t.Errorf("after emptying from state %q:\n%s", s.name, cmp.Diff(emptyText, got))
				}
			}
		}},
		{"squashed", func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			for _, s := range f.states {
				check(s, newRunner(t, f, nil).moveTo(s, false))
			}
		}},
	}
	for seed := range uint64(6) {
		vs = append(vs, variant{fmt.Sprintf("shuffled-%d", seed), func(t *testing.T, f *statesFile, check func(*stateDef, string)) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			r := newRunner(t, f, rng)
			for _, i := range rng.Perm(len(f.states)) {
				check(f.states[i], r.moveTo(f.states[i], false))
			}
			// And back to one state twice in a row.
			s := f.states[rng.IntN(len(f.states))]
			check(s, r.moveTo(s, false))
			check(s, r.moveTo(s, true))
		}})
	}
	return vs
}

func TestStates(t *testing.T) {
	files, err := filepath.Glob("testdata/states/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/states/*.txt (%v)", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			f, err := parseStatesFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if *rewrite {
				r := newRunner(t, f, nil)
				var outs []string
				for _, s := range f.states {
					outs = append(outs, r.moveTo(s, false))
				}
				if err := f.rewriteWith(outs); err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, v := range statesVariants() {
				t.Run(v.name, func(t *testing.T) {
					v.run(t, f, func(s *stateDef, got string) {
						t.Helper()
						if got != s.expect {
							t.Errorf("state %q: output differs (-want +got):\n%s", s.name, cmp.Diff(s.expect, got))
						}
					})
				})
			}
		})
	}
}
