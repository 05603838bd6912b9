package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
)

// requestSlack is added to the readiness timeout for the whole ADD request,
// so the service's own timeout (and its rollback) fires first.
const requestSlack = 15 * time.Second

// cleanupTimeout bounds DEL, CHECK, GC and STATUS requests and rollback.
const cleanupTimeout = 60 * time.Second

// Plugin runs CNI commands. The zero value is not usable; use New.
type Plugin struct {
	stdout io.Writer
	// fault, when set (tests only), may fail any kernel setup step.
	fault func(step string) error
}

// New returns a plugin that prints results to stdout.
func New(stdout io.Writer) *Plugin { return &Plugin{stdout: stdout} }

// Main is the plugin binary's main: it dispatches on CNI_COMMAND.
func Main(about string) {
	p := New(os.Stdout)
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.Add,
		Del:    p.Del,
		Check:  p.Check,
		GC:     p.GC,
		Status: p.Status,
	}, version.All, about)
}

func invalidConfig(err error) error {
	return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
}

// attachment gathers the identity of the attachment a command is about.
func attachment(args *skel.CmdArgs) (*config, *cniArgs, wire.Attachment, error) {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return nil, nil, wire.Attachment{}, invalidConfig(err)
	}
	cargs, err := parseArgs(args.Args)
	if err != nil {
		return nil, nil, wire.Attachment{}, types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
	}
	return conf, cargs, wire.Attachment{
		Network:     conf.Name,
		ContainerID: args.ContainerID,
		IfName:      args.IfName,
		Netns:       args.Netns,
		K8s:         cargs.k8s,
	}, nil
}

// Add asks the agent for addresses and an endpoint (answered once the
// endpoint's policy is programmed), then builds the veth pair. Every
// failure after the agent answered removes the veth and releases the
// addresses through DEL.
func (p *Plugin) Add(args *skel.CmdArgs) (err error) {
	conf, cargs, att, err := attachment(args)
	if err != nil {
		return err
	}
	k, err := openKernel(args.Netns, p.fault)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	defer k.close()

	req := wire.AddRequest{
		Attachment:         att,
		IPs:                append(slices.Clone(cargs.ips), conf.RuntimeConfig.IPs...),
		AssignIPv4:         conf.assign4,
		AssignIPv6:         conf.assign6,
		IPv4Pools:          conf.IPAM.IPv4Pools,
		IPv6Pools:          conf.IPAM.IPv6Pools,
		ReadyTimeoutMillis: conf.readyTimeout.Milliseconds(),
	}
	c := newClient(conf.AgentSocket)
	ctx, cancel := context.WithTimeout(context.Background(), conf.readyTimeout+requestSlack)
	defer cancel()
	var resp wire.AddResponse
	if err := c.call(ctx, wire.PathAdd, &req, &resp); err != nil {
		return err // the service rolled back its own work
	}

	// From here on, addresses are ours: any error gives them back.
	var created bool
	defer func() {
		if err == nil {
			return
		}
		var errs []error
		if created {
			if rerr := k.removeHost(resp.InterfaceName); rerr != nil {
				errs = append(errs, rerr)
			}
		}
		dctx, dcancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer dcancel()
		if derr := c.call(dctx, wire.PathDel, &wire.DelRequest{Attachment: att}, &wire.DelResponse{}); derr != nil {
			errs = append(errs, fmt.Errorf("release addresses: %w", derr))
		}
		if len(errs) > 0 {
			err = fmt.Errorf("%w (cleanup also failed: %w)", err, errors.Join(errs...))
		}
	}()

	ips, err := parsePrefixes(resp.IPs)
	if err != nil {
		return fmt.Errorf("add: agent answer: %w", err)
	}
	if resp.InterfaceName == "" || len(resp.InterfaceName) > 15 {
		return fmt.Errorf("add: agent answer: interfaceName %q: want 1 to 15 bytes", resp.InterfaceName)
	}
	var res setupResult
	res, created, err = k.setup(resp.InterfaceName, args.IfName, conf.MTU, ips)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	result := buildResult(resp.InterfaceName, args.IfName, args.Netns, res.ctrMAC, ips)
	out, err := result.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return fmt.Errorf("add: result as version %s: %w", conf.CNIVersion, err)
	}
	return out.PrintTo(p.stdout)
}

func parsePrefixes(in []string) ([]netip.Prefix, error) {
	if len(in) == 0 {
		return nil, errors.New("no addresses")
	}
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		pf, err := netip.ParsePrefix(s)
		if err != nil || pf.Bits() != pf.Addr().BitLen() {
			return nil, fmt.Errorf("ips[%d] %q: want a /32 or /128", i, s)
		}
		out = append(out, pf)
	}
	return out, nil
}

func buildResult(hostIf, ifName, netnsPath string, ctrMAC net.HardwareAddr, ips []netip.Prefix) *current.Result {
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostIf, Mac: HostMAC.String()},
			{Name: ifName, Mac: ctrMAC.String(), Sandbox: netnsPath},
		},
	}
	var v4, v6 bool
	for _, pf := range ips {
		gw := GatewayV4
		if pf.Addr().Is6() {
			gw, v6 = GatewayV6, true
		} else {
			v4 = true
		}
		r.IPs = append(r.IPs, &current.IPConfig{Interface: current.Int(1), Address: *ipNet(pf), Gateway: gw.AsSlice()})
	}
	if v4 {
		r.Routes = append(r.Routes, &types.Route{Dst: *ipNet(netip.MustParsePrefix("0.0.0.0/0")), GW: GatewayV4.AsSlice()})
	}
	if v6 {
		r.Routes = append(r.Routes, &types.Route{Dst: *ipNet(netip.MustParsePrefix("::/0")), GW: GatewayV6.AsSlice()})
	}
	return r
}

// Del removes the container's interface (a missing namespace or link is
// fine) and asks the agent to delete the endpoint and release the
// addresses. If the agent cannot be reached DEL fails, so the runtime
// retries it rather than forgetting addresses.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, _, att, err := attachment(args)
	if err != nil {
		return err
	}
	var errs []error
	if args.Netns != "" {
		k, err := openKernel(args.Netns, nil)
		switch {
		case errors.Is(err, errNoNetns):
		case err != nil:
			errs = append(errs, err)
		default:
			if err := k.removeContainer(args.IfName); err != nil {
				errs = append(errs, err)
			}
			k.close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := newClient(conf.AgentSocket).call(ctx, wire.PathDel, &wire.DelRequest{Attachment: att}, &wire.DelResponse{}); err != nil {
		if len(errs) == 0 {
			return err
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("del: %w", err)
	}
	return nil
}

// Check compares the kernel with what the agent's datastore holds and with
// the previous result, and reports every difference.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, _, att, err := attachment(args)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return invalidConfig(fmt.Errorf("check: prevResult: %w", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var want wire.CheckResponse
	if err := newClient(conf.AgentSocket).call(ctx, wire.PathCheck, &wire.CheckRequest{Attachment: att}, &want); err != nil {
		return err
	}
	problems := slices.Clone(want.Problems)
	ips, perr := parsePrefixes(want.IPs)
	if perr != nil {
		problems = append(problems, fmt.Sprintf("endpoint addresses: %v", perr))
	}
	if conf.PrevResult != nil {
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return invalidConfig(fmt.Errorf("check: prevResult: %w", err))
		}
		var got []string
		for _, ip := range prev.IPs {
			got = append(got, ip.Address.String())
		}
		if !sameSet(got, want.IPs) {
			problems = append(problems, fmt.Sprintf("prevResult has addresses %v, the endpoint %v", got, want.IPs))
		}
	}
	k, err := openKernel(args.Netns, nil)
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		problems = append(problems, k.check(want.InterfaceName, args.IfName, ips)...)
		k.close()
	}
	if len(problems) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("check: %d problem(s) with %s in %s", len(problems), args.IfName, args.Netns), strings.Join(problems, "; "))
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// GC asks the agent to release everything of this network on this node
// that the runtime no longer lists.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return invalidConfig(err)
	}
	req := wire.GCRequest{Network: conf.Name, Valid: []wire.GCAttachment{}}
	for _, a := range conf.ValidAttachments {
		req.Valid = append(req.Valid, wire.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	return newClient(conf.AgentSocket).call(ctx, wire.PathGC, &req, &wire.GCResponse{})
}

// Status reports the plugin not ready (CNI code 50) when the agent does
// not answer or says it cannot serve ADD.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return invalidConfig(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st wire.StatusResponse
	if err := newClient(conf.AgentSocket).call(ctx, wire.PathStatus, nil, &st); err != nil {
		var te *types.Error
		if errors.As(err, &te) {
			return types.NewError(types.ErrPluginNotAvailable, te.Msg, te.Details)
		}
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	if !st.Ready {
		return types.NewError(types.ErrPluginNotAvailable, "brindle agent not ready", st.Reason)
	}
	return nil
}

// check lists what is wrong with an attachment in the kernel.
func (k *kernel) check(hostIf, ifName string, ips []netip.Prefix) []string {
	var problems []string
	cl, err := k.ctr.LinkByName(ifName)
	if err != nil {
		return append(problems, fmt.Sprintf("container interface %s: %v", ifName, err))
	}
	if cl.Type() != "veth" {
		problems = append(problems, fmt.Sprintf("container interface %s is a %s, want veth", ifName, cl.Type()))
	}
	if cl.Attrs().Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("container interface %s is down", ifName))
	}
	addrs, err := k.ctr.AddrList(cl, netlink.FAMILY_ALL)
	if err != nil {
		problems = append(problems, fmt.Sprintf("list addresses of %s: %v", ifName, err))
	}
	for _, pf := range ips {
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == ipNet(pf).String() }) {
			problems = append(problems, fmt.Sprintf("container interface %s lacks address %s", ifName, pf))
		}
	}
	routes, err := k.ctr.RouteList(cl, netlink.FAMILY_ALL)
	if err != nil {
		problems = append(problems, fmt.Sprintf("list routes of %s: %v", ifName, err))
	}
	for _, want := range containerRoutes(cl.Attrs().Index, ips) {
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return sameRoute(r, want) }) {
			gw := "link"
			if want.Gw != nil {
				gw = "via " + want.Gw.String()
			}
			problems = append(problems, fmt.Sprintf("container lacks route %s %s dev %s", want.Dst, gw, ifName))
		}
	}
	hl, err := k.host.LinkByName(hostIf)
	if err != nil {
		return append(problems, fmt.Sprintf("host interface %s: %v", hostIf, err))
	}
	if hl.Attrs().Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("host interface %s is down", hostIf))
	}
	if hl.Attrs().HardwareAddr.String() != HostMAC.String() {
		problems = append(problems, fmt.Sprintf("host interface %s has MAC %s, want %s", hostIf, hl.Attrs().HardwareAddr, HostMAC))
	}
	if cl.Attrs().ParentIndex != hl.Attrs().Index {
		problems = append(problems, fmt.Sprintf("container interface %s is not the peer of host interface %s", ifName, hostIf))
	}
	for _, pf := range ips {
		if dev := routeDevice(k.host, pf); dev != hl.Attrs().Index {
			problems = append(problems, fmt.Sprintf("host has no route %s dev %s", pf, hostIf))
		}
	}
	return problems
}

func sameRoute(r netlink.Route, want *netlink.Route) bool {
	dst := "0.0.0.0/0"
	if r.Dst != nil {
		dst = r.Dst.String()
	} else if r.Family == netlink.FAMILY_V6 {
		dst = "::/0"
	}
	if dst != want.Dst.String() {
		return false
	}
	return r.Gw.Equal(want.Gw) || (r.Gw == nil && want.Gw == nil)
}
