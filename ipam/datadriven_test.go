package ipam

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata expectations with the actual output")

// TestDataDriven runs testdata/*.txt. Each case is a command line, "----",
// the expected output, and a blank line. Commands:
//
//	pool name=N cidr=C [blockSize=B] [disabled] [nodeSelector=SEL (_ for space)] [uses=A,B]
//	reserve C...            config [strict] [maxBlocks=N] [noAutoAlloc] [cooldown=S]
//	labels node=N k=v...    clock +Ns
//	auto node=N handle=H [num=K] [num6=K] [pools=a,b] [max=M] [use=U]
//	assign node=N handle=H ip=A     release ip=A [handle=H] [seq=S]
//	release-handle handle=H         seq ip=A (prints the allocation's sequence number)
//	show | check | dump | blocks node=N | borrowed node=N
//	fail n=K (fail the K-th write from now) | plant key=K value=V | remove key=K
func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runFile(t, f) })
	}
}

type ddCase struct {
	comments  []string // lines starting with # just before the command
	cmd, want string
	line      int
}

func parseDD(t *testing.T, path string) []ddCase {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var cases []ddCase
	sc := bufio.NewScanner(fh)
	ln := 0
	var comments []string
	for sc.Scan() {
		ln++
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			comments = append(comments, l)
			continue
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		c := ddCase{cmd: l, line: ln, comments: comments}
		comments = nil
		if !sc.Scan() {
			t.Fatalf("%s:%d: command without ----", path, ln)
		}
		ln++
		if sc.Text() != "----" {
			t.Fatalf("%s:%d: want ----, got %q", path, ln, sc.Text())
		}
		var out []string
		for sc.Scan() {
			ln++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		c.want = strings.Join(out, "\n")
		cases = append(cases, c)
	}
	return cases
}

type ddEnv struct {
	st    *MemStore
	src   *StaticSource
	ipam  *IPAM
	now   time.Time
	ctx   context.Context
	names int
}

func newDDEnv(t *testing.T) *ddEnv {
	e := &ddEnv{st: NewMemStore(), src: &StaticSource{Labels: map[string]map[string]string{}},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ctx: context.Background()}
	var err error
	e.ipam, err = New(e.st, Config{Node: "host-a", Source: e.src, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func runFile(t *testing.T, path string) {
	cases := parseDD(t, path)
	e := newDDEnv(t)
	var b strings.Builder
	failed := false
	for _, c := range cases {
		got := e.run(t, c.cmd)
		for _, l := range c.comments {
			fmt.Fprintln(&b, l)
		}
		fmt.Fprintf(&b, "%s\n----\n%s\n\n", c.cmd, got)
		if !*rewrite && got != c.want {
			failed = true
			t.Errorf("%s:%d: %s\n%s", path, c.line, c.cmd, cmp.Diff(c.want, got))
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimSuffix(b.String(), "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if failed {
		t.Log("run with -rewrite to regenerate, then review the diff")
	}
}

func args(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func errText(err error) string { return "error: " + err.Error() }

func (e *ddEnv) run(t *testing.T, line string) string {
	t.Helper()
	f := strings.Fields(line)
	a := args(f[1:])
	switch f[0] {
	case "pool":
		p := &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: a["name"]}, Spec: api.IPPoolSpec{CIDR: a["cidr"]}}
		p.Spec.BlockSize, _ = strconv.Atoi(a["blockSize"])
		_, p.Spec.Disabled = a["disabled"]
		if s, ok := a["nodeSelector"]; ok {
			p.Spec.NodeSelector = strings.ReplaceAll(s, "_", " ")
		}
		if u := a["uses"]; u != "" {
			p.Spec.AllowedUses = strings.Split(u, ",")
		}
		e.src.Pools = append(e.src.Pools, p)
		return "ok"
	case "reserve":
		e.names++
		e.src.Reservations = append(e.src.Reservations, &api.IPReservation{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r%d", e.names)},
			Spec:       api.IPReservationSpec{ReservedCIDRs: f[1:]}})
		return "ok"
	case "config":
		c := &api.IPAMConfigurationSpec{}
		_, c.StrictAffinity = a["strict"]
		if v, ok := a["maxBlocks"]; ok {
			n, _ := strconv.Atoi(v)
			c.MaxBlocksPerHost = int32(n)
		}
		if _, ok := a["noAutoAlloc"]; ok {
			c.AutoAllocateBlocks = new(bool)
		}
		if v, ok := a["cooldown"]; ok {
			n, _ := strconv.Atoi(v)
			c.IPCooldownSeconds = &n
		}
		e.src.Config = c
		return "ok"
	case "labels":
		l := map[string]string{}
		for k, v := range a {
			if k != "node" {
				l[k] = v
			}
		}
		e.src.Labels[a["node"]] = l
		return "ok"
	case "clock":
		d, err := time.ParseDuration(strings.TrimPrefix(f[1], "+"))
		if err != nil {
			t.Fatal(err)
		}
		e.now = e.now.Add(d)
		return "ok"
	case "fail":
		n, _ := strconv.Atoi(a["n"])
		e.st.FailWrite(n, errors.New("disk on fire"))
		return "ok"
	case "plant":
		e.st.Put(a["key"], []byte(strings.SplitN(line, "value=", 2)[1]))
		return "ok"
	case "remove":
		e.st.Remove(a["key"])
		return "ok"
	case "auto":
		args := AutoAssignArgs{Node: a["node"], HandleID: a["handle"], IntendedUse: a["use"]}
		args.Num4, _ = strconv.Atoi(a["num"])
		args.Num6, _ = strconv.Atoi(a["num6"])
		args.MaxBlocksPerHost, _ = strconv.Atoi(a["max"])
		if p := a["pools"]; p != "" {
			args.Pools = strings.Split(p, ",")
		}
		got, err := e.ipam.AutoAssign(e.ctx, args)
		if err != nil {
			return errText(err)
		}
		return joinStr(got)
	case "assign":
		ip, err := netip.ParseAddr(a["ip"])
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ipam.AssignIP(e.ctx, AssignIPArgs{IP: ip, HandleID: a["handle"], Node: a["node"]}); err != nil {
			return errText(err)
		}
		return "ok"
	case "release":
		var opts []ReleaseOptions
		for _, s := range strings.Split(a["ip"], ",") {
			o := ReleaseOptions{Address: netip.MustParseAddr(s), HandleID: a["handle"]}
			if v, ok := a["seq"]; ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				o.SequenceNumber = &n
			}
			opts = append(opts, o)
		}
		un, err := e.ipam.ReleaseIPs(e.ctx, opts...)
		if err != nil {
			return errText(err)
		}
		return "unallocated: " + joinStr(un)
	case "release-handle":
		got, err := e.ipam.ReleaseByHandle(e.ctx, a["handle"])
		if err != nil {
			return errText(err)
		}
		return "released: " + joinStr(got)
	case "seq":
		ip := netip.MustParseAddr(a["ip"])
		for _, kb := range mustBlocks(t, e) {
			if o := addrOrdinal(kb.cidr, ip); o >= 0 {
				v, ok := kb.block.SequenceNumberForAllocation[strconv.Itoa(o)]
				return fmt.Sprintf("%d %v", v, ok)
			}
		}
		return "no block"
	case "show":
		r, err := e.ipam.Show(e.ctx)
		if err != nil {
			return errText(err)
		}
		return renderShow(r)
	case "check":
		r, err := e.ipam.Check(e.ctx)
		if err != nil {
			return errText(err)
		}
		return renderCheck(r)
	case "blocks":
		got, err := e.ipam.BlocksForHost(e.ctx, a["node"])
		if err != nil {
			return errText(err)
		}
		return joinStr(got)
	case "borrowed":
		got, err := e.ipam.BorrowedIPs(e.ctx, a["node"])
		if err != nil {
			return errText(err)
		}
		return joinStr(got)
	case "dump":
		return dump(t, e.st)
	}
	t.Fatalf("unknown command %q", f[0])
	return ""
}

func mustBlocks(t *testing.T, e *ddEnv) []keyedBlock {
	bs, err := e.ipam.listBlocks(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func joinStr[T fmt.Stringer](xs []T) string {
	if len(xs) == 0 {
		return "(none)"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, " ")
}

func renderShow(r *ShowReport) string {
	var b strings.Builder
	u := func(x Usage) string {
		return fmt.Sprintf("total=%d inUse=%d cooling=%d reserved=%d free=%d", x.Total, x.InUse, x.Cooling, x.Reserved, x.Free)
	}
	for _, p := range r.Pools {
		fmt.Fprintf(&b, "pool %s %s /%d disabled=%v %s\n", p.Name, p.CIDR, p.BlockSize, p.Disabled, u(p.Usage))
		for _, bl := range p.Blocks {
			fmt.Fprintf(&b, "  block %s affinity=%q %s\n", bl.CIDR, bl.Affinity, u(bl.Usage))
		}
	}
	for _, bl := range r.Orphans {
		fmt.Fprintf(&b, "orphan block %s affinity=%q %s\n", bl.CIDR, bl.Affinity, u(bl.Usage))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func renderCheck(r *CheckReport) string {
	s := fmt.Sprintf("blocks=%d handles=%d affinities=%d allocations=%d problems=%d",
		r.Blocks, r.Handles, r.Affinities, r.Allocations, len(r.Problems))
	for _, p := range r.Problems {
		s += "\n" + p.String()
	}
	return s
}

// dump prints the store: handles and affinities raw, blocks summarised.
func dump(t *testing.T, st *MemStore) string {
	kvs, err := st.List(context.Background(), ipamPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, blockPrefix) {
			cidr, b, err := decodeBlock(kv.Key, kv.Value)
			if err != nil {
				lines = append(lines, kv.Key+" CORRUPT "+err.Error())
				continue
			}
			aff := "-"
			if b.Affinity != nil {
				aff = *b.Affinity
			}
			var allocs []string
			for o, a := range b.Allocations {
				if a != nil {
					s := fmt.Sprintf("%d:%s", o, b.handleOf(o))
					if b.Attributes[*a].ReleasedAt != nil {
						s += "(cooling)"
					}
					allocs = append(allocs, s)
				}
			}
			head := b.Unallocated
			if len(head) > 4 {
				head = head[:4]
			}
			lines = append(lines, fmt.Sprintf("%s affinity=%s seq=%d allocs=[%s] unallocatedHead=%v attrs=%d",
				cidr, aff, b.SequenceNumber, strings.Join(allocs, " "), head, len(b.Attributes)))
			continue
		}
		lines = append(lines, kv.Key+" "+string(kv.Value))
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return "(empty)"
	}
	return strings.Join(lines, "\n")
}
