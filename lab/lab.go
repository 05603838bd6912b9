package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Config says where a lab's files and binaries are.
type Config struct {
	// StateDir holds one directory per lab; default DefaultStateDir.
	StateDir string
	// Brindle is the brindle binary (datastore, node); default: this
	// program.
	Brindle string
	// CNIDir holds the brindle-cni plugin; default: the directory of
	// Brindle, then $PATH.
	CNIDir string
	// Logger receives progress; Out gets the short lines a user sees.
	Logger *slog.Logger
	Out    io.Writer
}

func (c *Config) defaults() error {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Brindle == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Brindle = exe
	}
	if c.CNIDir == "" {
		c.CNIDir = filepath.Dir(c.Brindle)
		if _, err := os.Stat(filepath.Join(c.CNIDir, "brindle-cni")); err != nil {
			if p, err := exec.LookPath("brindle-cni"); err == nil {
				c.CNIDir = filepath.Dir(p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(c.CNIDir, "brindle-cni")); err != nil {
		return fmt.Errorf("the CNI plugin brindle-cni is not in %s nor on $PATH (build it: go build -o bin/ ./cmd/...)", c.CNIDir)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return nil
}

// UpOptions shape a new lab.
type UpOptions struct {
	Name  string
	Hosts int
	// TOR runs BIRD 2 in the router, peering with every host.
	TOR bool
	// VXLANMode is the IPPool's vxlanMode: "" (Never), Always or
	// CrossSubnet.
	VXLANMode string
}

// Up builds a lab and returns its state. On any failure, or when ctx ends,
// it removes what it built.
func Up(ctx context.Context, cfg Config, o UpOptions) (st *State, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	if o.Hosts < 1 || o.Hosts > maxHosts {
		return nil, fmt.Errorf("--hosts %d: want 1 to %d", o.Hosts, maxHosts)
	}
	switch o.VXLANMode {
	case "", "Never", "Always", "CrossSubnet":
	default:
		return nil, fmt.Errorf("vxlan mode %q: want Never, Always or CrossSubnet", o.VXLANMode)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces, veths, routes)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("`ip` (iproute2) is not installed")
	}
	if o.TOR {
		if _, err := exec.LookPath("bird"); err != nil {
			return nil, errors.New("--tor needs BIRD 2 (`bird`; Debian package bird2)")
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.StateDir, o.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lab %q exists (state in %s): take it down first with `brindle lab down --name %s`", o.Name, dir, o.Name)
		}
		return nil, err
	}
	built := &State{Name: o.Name, Dir: dir, TOR: o.TOR, VXLANMode: o.VXLANMode, MgmtIf: "bl-" + o.Name}
	st = built
	defer func() {
		if err != nil {
			// (st is nil here: the return statement set it.)
			cfg.Logger.Warn("lab up failed; removing what was built", "lab", o.Name, "error", err)
			if derr := downState(context.Background(), cfg, built); derr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", derr))
			}
			st = nil
		}
	}()
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := st.save(); err != nil {
		return nil, err
	}
	b := &builder{cfg: cfg, st: st}
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"fabric: router, two subnets, outside host", b.fabric},
		{fmt.Sprintf("%d hosts", o.Hosts), func(ctx context.Context) error { return b.hosts(ctx, o.Hosts) }},
		{"datastore (embedded etcd)", b.datastore},
		{"IP pool " + defaultPool, b.pool},
		{"one brindle node per host", b.agents},
	}
	if o.TOR {
		steps = append(steps, struct {
			what string
			fn   func(context.Context) error
		}{"BIRD 2 top-of-rack router", b.bird})
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Out, "lab %s: %s\n", o.Name, s.what)
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
		if err := st.save(); err != nil {
			return nil, err
		}
	}
	if err := WaitRouting(ctx, st, 60*time.Second); err != nil {
		return nil, err
	}
	return st, nil
}

// builder holds what Up's steps share.
type builder struct {
	cfg    Config
	st     *State
	client *datastore.Client
}

func (b *builder) addNS(ctx context.Context, name string) error {
	b.st.Namespaces = append(b.st.Namespaces, name)
	if err := b.st.save(); err != nil {
		return err
	}
	if err := ipCmd(ctx, "netns", "add", name); err != nil {
		return err
	}
	return ipCmd(ctx, "-n", name, "link", "set", "lo", "up")
}

func sysctl(ctx context.Context, ns, kv string) error {
	return inNS(ctx, ns, "sysctl", "-q", "-w", kv)
}

// fabric builds the router (two bridges, one per subnet), the outside
// host and the management veth to the machine's own namespace.
func (b *builder) fabric(ctx context.Context) error {
	st := b.st
	r := st.Name + "-router"
	st.Router = Host{Name: "router", NS: r, Addr: netip.PrefixFrom(subnetA.Addr().Next(), subnetA.Bits())}
	if err := b.addNS(ctx, r); err != nil {
		return err
	}
	if err := sysctl(ctx, r, "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	for _, seg := range []struct {
		br  string
		net netip.Prefix
	}{{"sa", subnetA}, {"sb", subnetB}} {
		gw := netip.PrefixFrom(seg.net.Addr().Next(), seg.net.Bits())
		for _, args := range [][]string{
			{"-n", r, "link", "add", seg.br, "type", "bridge"},
			{"-n", r, "addr", "add", gw.String(), "dev", seg.br},
			{"-n", r, "link", "set", seg.br, "up"},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return err
			}
		}
	}
	// The outside host: where externalProbes come from.
	st.Outside = st.Name + "-outside"
	if err := b.addNS(ctx, st.Outside); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", r, "link", "add", "out", "type", "veth", "peer", "name", "eth0", "netns", st.Outside},
		{"-n", r, "addr", "add", netip.PrefixFrom(outsideGW, outsideNet.Bits()).String(), "dev", "out"},
		{"-n", r, "link", "set", "out", "up"},
		{"-n", st.Outside, "addr", "add", netip.PrefixFrom(outsideAddr, outsideNet.Bits()).String(), "dev", "eth0"},
		{"-n", st.Outside, "link", "set", "eth0", "up"},
		{"-n", st.Outside, "route", "add", "default", "via", outsideGW.String()},
	} {
		if err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	// Management: a veth from the machine's namespace to the router,
	// carrying the agents' datastore traffic (masqueraded by the router).
	// One lab at a time picks and takes its management address, whatever
	// its state directory.
	unlockMgmt, err := lockFile(mgmtLock)
	if err != nil {
		return err
	}
	defer unlockMgmt()
	slot, err := freeMgmtSlot(b.cfg.StateDir, st.Name)
	if err != nil {
		return err
	}
	base := mgmtBase.As4()
	base[3] = byte(4 * slot)
	st.MgmtRoot = netip.AddrFrom4(base).Next()
	st.MgmtRouter = st.MgmtRoot.Next()
	if err := st.save(); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", st.MgmtIf, "type", "veth", "peer", "name", "mgmt", "netns", r},
		{"addr", "add", netip.PrefixFrom(st.MgmtRoot, 30).String(), "dev", st.MgmtIf},
		{"link", "set", st.MgmtIf, "up"},
		{"-n", r, "addr", "add", netip.PrefixFrom(st.MgmtRouter, 30).String(), "dev", "mgmt"},
		{"-n", r, "link", "set", "mgmt", "up"},
	} {
		if err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	nat := "table ip brindle-lab {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"mgmt\" masquerade\n }\n}\n"
	if _, err := output(ctx, []byte(nat), "ip", "netns", "exec", r, "nft", "-f", "-"); err != nil {
		return err
	}
	st.Endpoint = fmt.Sprintf("http://%s:%d", st.MgmtRoot, etcdPort)
	return nil
}

// freeMgmtSlot picks a /30 in 169.254.210.0/24 that no other lab and no
// interface of this machine uses.
func freeMgmtSlot(stateDir, self string) (int, error) {
	used := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				used[p.Addr()] = true
			}
		}
	}
	names, _ := List(stateDir)
	for _, n := range names {
		if n == self {
			continue
		}
		if s, err := Load(stateDir, n); err == nil && s.MgmtRoot.IsValid() {
			used[s.MgmtRoot] = true
		}
	}
	for slot := 1; slot < maxMgmtSlots; slot++ {
		a := mgmtBase.As4()
		a[3] = byte(4*slot) + 1
		if !used[netip.AddrFrom4(a)] {
			return slot, nil
		}
	}
	return 0, errors.New("no free management address in 169.254.210.0/24 (too many labs)")
}

// hosts creates the host namespaces, alternating between the subnets.
func (b *builder) hosts(ctx context.Context, n int) error {
	st := b.st
	for i := 1; i <= n; i++ {
		subnet, br := subnetA, "sa"
		if i%2 == 0 {
			subnet, br = subnetB, "sb"
		}
		addr := subnet.Addr()
		for j := 0; j < 10+i; j++ {
			addr = addr.Next()
		}
		name := fmt.Sprintf("host%d", i)
		hdir := filepath.Join(st.Dir, name)
		if err := os.MkdirAll(hdir, 0o755); err != nil {
			return err
		}
		h := Host{
			Name: name, NS: st.Name + "-" + name, Addr: netip.PrefixFrom(addr, subnet.Bits()),
			Gateway: subnet.Addr().Next(), Socket: filepath.Join(hdir, "agent.sock"),
			Log: filepath.Join(hdir, "node.log"), CNIConf: filepath.Join(hdir, "10-brindle.conflist"),
		}
		st.Hosts = append(st.Hosts, h)
		if err := b.addNS(ctx, h.NS); err != nil {
			return err
		}
		peer := fmt.Sprintf("h%d", i)
		for _, args := range [][]string{
			{"-n", st.Router.NS, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", st.Router.NS, "link", "set", peer, "master", br},
			{"-n", st.Router.NS, "link", "set", peer, "up"},
			{"-n", h.NS, "addr", "add", h.Addr.String(), "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"-n", h.NS, "route", "add", "default", "via", h.Gateway.String()},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return err
			}
		}
		if err := sysctl(ctx, h.NS, "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
		if err := writeCNIConf(h); err != nil {
			return err
		}
	}
	return nil
}

// datastore starts `brindle datastore` on the management address.
func (b *builder) datastore(ctx context.Context) error {
	st := b.st
	logPath := filepath.Join(st.Dir, "datastore.log")
	pid, err := start("", logPath, b.cfg.Brindle, "datastore",
		"--name", "lab-"+st.Name,
		"--data-dir", filepath.Join(st.Dir, "etcd"),
		"--listen-client-url", st.Endpoint,
		"--listen-peer-url", fmt.Sprintf("http://%s:%d", st.MgmtRoot, etcdPeerPort))
	if err != nil {
		return err
	}
	st.Procs = append(st.Procs, Proc{Role: "datastore", PID: pid, Log: logPath})
	if err := st.save(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := datastore.New(cctx, datastore.Config{Endpoints: []string{st.Endpoint}, DialTimeout: time.Second, Logger: b.cfg.Logger})
		cancel()
		if err == nil {
			b.client = c
			return nil
		}
		if exited(pid) {
			return fmt.Errorf("the datastore exited:\n%s", tail(logPath, 15))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the datastore did not answer at %s within 30s: %w", st.Endpoint, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pool writes the IPPool (and, with --tor, one BGPPeer per host).
func (b *builder) pool(ctx context.Context) error {
	defer b.client.Close()
	objs := []api.Object{&api.IPPool{
		ObjectMeta: metaName(poolName),
		Spec:       api.IPPoolSpec{CIDR: defaultPool, BlockSize: 26, VXLANMode: b.st.VXLANMode, IPIPMode: "Never"},
	}}
	if b.st.TOR {
		// Top-of-rack design: no mesh; each host (its own AS) peers with
		// the router only, which passes every block on to the others.
		off := false
		objs = append(objs, &api.BGPConfiguration{
			ObjectMeta: metaName("default"),
			Spec:       api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off},
		})
		for _, h := range b.st.Hosts {
			objs = append(objs, &api.BGPPeer{
				ObjectMeta: metaName("tor-" + h.Name),
				Spec:       api.BGPPeerSpec{Node: h.Name, PeerIP: h.Gateway.String(), ASNumber: api.ASNumber(torAS)},
			})
		}
	}
	for _, o := range objs {
		api.Default(o)
		if err := api.Validate(o); err != nil {
			return err
		}
	}
	_, err := b.client.WriteBatch(ctx, datastore.OpApply, objs)
	return err
}

// nodeArgs are `brindle node`'s arguments for a host.
func (b *builder) nodeArgs(h Host) []string {
	args := []string{"node", "--hostname", h.Name, "--etcd-endpoints", b.st.Endpoint,
		"--socket", h.Socket, "--config-file", ""}
	if b.st.BGP {
		args = append(args, "--ip", h.Addr.String())
		if b.st.TOR {
			args = append(args, "--as", fmt.Sprint(hostAS(h)))
		}
	}
	return args
}

// hostAS is a host's AS number with --tor: 65001 for host1, and so on.
func hostAS(h Host) int {
	var n int
	fmt.Sscanf(h.Name, "host%d", &n)
	return 65000 + n
}

// supportsNodeIP reports whether `brindle node` registers a Node with BGP
// (it has --ip).
func supportsNodeIP(brindle string) bool {
	out, err := exec.Command(brindle, "node", "--help").CombinedOutput()
	return err == nil && regexp.MustCompile(`(?m)^\s+--ip\b`).Match(out)
}

// agents starts one `brindle node` per host (and, without --tor, one in
// the router, so that it learns every block by BGP), then waits until each
// is in sync and has programmed its dataplane.
func (b *builder) agents(ctx context.Context) error {
	st := b.st
	st.BGP = supportsNodeIP(b.cfg.Brindle)
	hosts := append([]*Host(nil), ptrs(st.Hosts)...)
	if !st.TOR {
		rdir := filepath.Join(st.Dir, "router")
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			return err
		}
		st.Router.Socket = filepath.Join(rdir, "agent.sock")
		st.Router.Log = filepath.Join(rdir, "node.log")
		hosts = append(hosts, &st.Router)
	}
	for _, h := range hosts {
		pid, err := start(h.NS, h.Log, b.cfg.Brindle, b.nodeArgs(*h)...)
		if err != nil {
			return err
		}
		st.Procs = append(st.Procs, Proc{Role: "node/" + h.Name, PID: pid, Log: h.Log})
		if err := st.save(); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		if err := waitAgent(ctx, st, h, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func ptrs(hs []Host) []*Host {
	out := make([]*Host, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

// waitAgent waits for a host's agent to be in sync and programmed.
func waitAgent(ctx context.Context, st *State, h *Host, timeout time.Duration) error {
	c := agent.NewClient(h.Socket)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := c.Status(cctx)
		cancel()
		switch {
		case err != nil:
			last = err
		case !s.InSync:
			last = errors.New("not in sync with the datastore")
		case !s.Programmed:
			last = fmt.Errorf("not programmed (%s)", s.LastApplyError)
		default:
			return nil
		}
		for _, p := range st.Procs {
			if p.Role == "node/"+h.Name && exited(p.PID) {
				return fmt.Errorf("the agent of %s exited:\n%s", h.Name, tail(h.Log, 15))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the agent of %s is not ready after %s: %v (log %s)", h.Name, timeout, last, h.Log)
}

// WaitProgrammed waits until every agent of the lab has programmed the
// datastore as of revision rev (or later).
func WaitProgrammed(ctx context.Context, st *State, rev int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, sock := range st.Sockets() {
		c := agent.NewClient(sock)
		for {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := c.Status(cctx)
			cancel()
			if err == nil && s.Programmed && s.ProgrammedRevision >= rev {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("agent %s has not programmed revision %d after %s (status %+v, error %v)", sock, rev, timeout, s, err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Down removes a lab: processes, namespaces, the management veth and the
// state directory. A lab that is half built or half removed is fine.
func Down(ctx context.Context, cfg Config, name string) error {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	dir := filepath.Join(cfg.StateDir, name)
	st, err := Load(cfg.StateDir, name)
	if err != nil {
		if _, serr := os.Stat(dir); serr != nil {
			return err
		}
		// No state file: remove what the naming scheme says is ours.
		st = &State{Name: name, Dir: dir, MgmtIf: "bl-" + name}
	}
	return downState(ctx, cfg, st)
}

func downState(ctx context.Context, cfg Config, st *State) error {
	var errs []error
	// Processes: BIRD and agents first, the datastore last.
	for i := len(st.Procs) - 1; i >= 0; i-- {
		if err := stop(st.Procs[i].PID, st.Dir, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	nsNames := append([]string(nil), st.Namespaces...)
	for _, p := range st.Pods {
		nsNames = append(nsNames, p.NetNS)
	}
	// Namespaces left by an interrupted command that did not record them.
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(st.Name) + `-(router|outside|host[0-9]+|pod-.*)$`)
		for _, e := range ents {
			if re.MatchString(e.Name()) {
				nsNames = append(nsNames, e.Name())
			}
		}
	}
	seen := map[string]bool{}
	for i := len(nsNames) - 1; i >= 0; i-- {
		n := nsNames[i]
		if seen[n] {
			continue
		}
		seen[n] = true
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err != nil {
			continue
		}
		if err := ipCmd(ctx, "netns", "delete", n); err != nil {
			errs = append(errs, err)
		}
	}
	if st.MgmtIf != "" {
		if _, err := net.InterfaceByName(st.MgmtIf); err == nil {
			// Deleting the router took the pair with it, or will soon.
			if err := ipCmd(ctx, "link", "delete", st.MgmtIf); err != nil {
				if _, gone := net.InterfaceByName(st.MgmtIf); gone == nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(st.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Client connects to the lab's datastore.
func (st *State) Client(ctx context.Context, logger *slog.Logger) (*datastore.Client, error) {
	return datastore.New(ctx, datastore.Config{Endpoints: []string{st.Endpoint}, DialTimeout: 3 * time.Second, Logger: logger})
}

func writeCNIConf(h Host) error {
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "k8s-pod-network",
		"plugins": []any{map[string]any{
			"type":                         "brindle-cni",
			"agent_socket":                 h.Socket,
			"policy_setup_timeout_seconds": 30,
			"ipam":                         map[string]any{"type": "calico-ipam"},
			"capabilities":                 map[string]any{"ips": true},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(h.CNIConf, b, 0o644)
}

// ProcAlive reports for each process whether it still runs.
func (st *State) ProcAlive() map[string]bool {
	out := map[string]bool{}
	for _, p := range st.Procs {
		out[p.Role] = ours(p.PID, st.Dir)
	}
	return out
}

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// hostOf returns the pod's host.
func (st *State) hostOf(p *Pod) (*Host, error) {
	h, ok := st.HostByName(p.Host)
	if !ok {
		return nil, fmt.Errorf("pod %s: host %q is not in lab %s (hosts: %s)", p.ID(), p.Host, st.Name, strings.Join(st.hostNames(), ", "))
	}
	return h, nil
}

func (st *State) hostNames() []string {
	var out []string
	for _, h := range st.Hosts {
		out = append(out, h.Name)
	}
	return out
}
