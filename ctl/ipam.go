package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
)

// addIPAMCommands adds "ipam show|check|release".
func addIPAMCommands(root *cobra.Command, opts *Options) {
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Inspect and repair IP address management",
	}
	cmd.AddCommand(newIPAMShowCommand(opts), newIPAMCheckCommand(opts), newIPAMReleaseCommand(opts))
	root.AddCommand(cmd)
}

// withIPAM connects and runs fn with an IPAM over the datastore.
func withIPAM(cmd *cobra.Command, opts *Options, fn func(ctx context.Context, c *datastore.Client, m *ipam.IPAM) error) error {
	c, err := opts.Connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := ipam.New(ipam.NewEtcdStore(c), ipam.Config{Source: cni.NewDatastoreSource(c), Logger: opts.Logger})
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c, m)
}

func newIPAMShowCommand(opts *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show address usage per IP pool and per block",
		Long: `Prints, for every IP pool and each of its blocks, how many addresses
there are, how many are in use (or cooling down after release), reserved and
free, and which node the block is affine to.`,
		Example: `  brindlectl ipam show
  brindlectl ipam show -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			return withIPAM(cmd, opts, func(ctx context.Context, _ *datastore.Client, m *ipam.IPAM) error {
				rep, err := m.Show(ctx)
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSONTo(opts.Streams.Out, rep)
				}
				return printShow(opts.Streams.Out, rep)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printShow(w io.Writer, rep *ipam.ShowReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUPING\tCIDR\tTOTAL\tIN USE\tCOOLING\tRESERVED\tFREE\tAFFINITY")
	row := func(kind, cidr string, u ipam.Usage, aff string) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d (%s)\t%d\t%d\t%d (%s)\t%s\n", kind, cidr, u.Total, u.InUse, percent(u.InUse, u.Total), u.Cooling, u.Reserved, u.Free, percent(u.Free, u.Total), aff)
	}
	for _, p := range rep.Pools {
		name := "IP Pool " + p.Name
		if p.Disabled {
			name += " (disabled)"
		}
		row(name, p.CIDR, p.Usage, "")
		for _, b := range p.Blocks {
			row("  Block", b.CIDR, b.Usage, orNone(b.Affinity))
		}
	}
	for _, b := range rep.Orphans {
		row("Block (no pool)", b.CIDR, b.Usage, orNone(b.Affinity))
	}
	return tw.Flush()
}

func percent(n, total uint64) string {
	if total == 0 {
		return "0%"
	}
	r := new(big.Rat).SetFrac(new(big.Int).SetUint64(n*100), new(big.Int).SetUint64(total))
	f, _ := r.Float64()
	return fmt.Sprintf("%.0f%%", f)
}

// Problem kinds ipam check adds to ipam.Check's: the datastore-level view
// of leaks (compat §4.5, the GC's validity rules).
const (
	// ProblemLeakedAddress: an allocation no WorkloadEndpoint accounts for.
	ProblemLeakedAddress ipam.ProblemKind = "address-without-endpoint"
	// ProblemEndpointUnallocated: an endpoint address IPAM does not hold
	// for that endpoint.
	ProblemEndpointUnallocated ipam.ProblemKind = "endpoint-address-not-allocated"
)

// tunnelHandlePrefixes own addresses that have no endpoint (compat §4.3).
var tunnelHandlePrefixes = []string{"ipip-tunnel-addr-", "vxlan-tunnel-addr-", "vxlan-v6-tunnel-addr-", "wireguard-tunnel-addr-", "wireguard-v6-tunnel-addr-", "lb-"}

func newIPAMCheckCommand(opts *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Find leaked addresses and IPAM inconsistencies",
		Long: `Cross-checks IPAM blocks, handles and affinities, and every allocation
against the WorkloadEndpoints: an address no endpoint accounts for is a leak,
an endpoint address IPAM does not hold is an inconsistency. Tunnel and
load-balancer addresses are not expected to have endpoints.

The view is not atomic: an ADD in flight can show up as a leak. Run it again
before releasing anything. Exit status: 0 when nothing is wrong, 1 otherwise.`,
		Example: `  brindlectl ipam check
  brindlectl ipam check -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			return withIPAM(cmd, opts, func(ctx context.Context, c *datastore.Client, m *ipam.IPAM) error {
				rep, err := m.Check(ctx)
				if err != nil {
					return err
				}
				leaks, err := endpointProblems(ctx, c)
				if err != nil {
					return err
				}
				rep.Problems = append(rep.Problems, leaks...)
				if output == "json" {
					if err := writeJSONTo(opts.Streams.Out, rep); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(opts.Streams.Out, "Checked %d blocks, %d handles, %d affinities, %d allocations.\n", rep.Blocks, rep.Handles, rep.Affinities, rep.Allocations)
					for _, p := range rep.Problems {
						fmt.Fprintf(opts.Streams.Out, "PROBLEM %s\n", p)
					}
				}
				if n := len(rep.Problems); n > 0 {
					return &exitError{code: 1, err: fmt.Errorf("ipam check: %d problem(s) found", n)}
				}
				fmt.Fprintln(opts.Streams.Out, "No problems found.")
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// allocation is one allocated address and its holder.
type allocation struct {
	addr   netip.Addr
	handle string
	block  string
	key    string
	node   string
}

// allocations decodes every block's live allocations.
func allocations(ctx context.Context, c *datastore.Client) ([]allocation, error) {
	kvs, err := ipam.NewEtcdStore(c).List(ctx, datastore.IPAMPrefix+"assignment/")
	if err != nil {
		return nil, err
	}
	var out []allocation
	for _, kv := range kvs {
		var b ipam.Block
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			continue // ipam.Check reports corrupt blocks
		}
		cidr, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			continue
		}
		for ord, idx := range b.Allocations {
			if idx == nil || *idx < 0 || *idx >= len(b.Attributes) {
				continue
			}
			a := b.Attributes[*idx]
			if a.ReleasedAt != nil {
				continue // cooling down
			}
			al := allocation{addr: nthAddr(cidr.Addr(), ord), block: b.CIDR, key: kv.Key, node: a.Secondary[ipam.AttrNode]}
			if a.HandleID != nil {
				al.handle = *a.HandleID
			}
			out = append(out, al)
		}
	}
	return out, nil
}

func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := int(b[i]) + carry
		b[i] = byte(sum)
		carry = sum >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// endpointProblems matches allocations with WorkloadEndpoints.
func endpointProblems(ctx context.Context, c *datastore.Client) ([]ipam.Problem, error) {
	allocs, err := allocations(ctx, c)
	if err != nil {
		return nil, err
	}
	kind, _ := api.LookupKind("WorkloadEndpoint")
	objs, _, err := c.List(ctx, kind, datastore.ListOptions{})
	if err != nil {
		return nil, err
	}
	byAddr := map[netip.Addr][]*api.WorkloadEndpoint{}
	for _, o := range objs {
		w, ok := o.(*api.WorkloadEndpoint)
		if !ok {
			continue
		}
		for _, n := range w.Spec.IPNetworks {
			if p, err := netip.ParsePrefix(n); err == nil {
				byAddr[p.Addr()] = append(byAddr[p.Addr()], w)
			}
		}
	}
	accounts := func(w *api.WorkloadEndpoint, handle string) bool {
		if w.Spec.ContainerID != "" && strings.HasSuffix(handle, "."+w.Spec.ContainerID) {
			return true
		}
		return w.Spec.Pod != "" && handle == w.Namespace+"."+w.Spec.Pod
	}
	var problems []ipam.Problem
	held := map[netip.Addr]string{}
	for _, a := range allocs {
		held[a.addr] = a.handle
		if a.handle == "" || isTunnelHandle(a.handle) {
			continue // allocation-without-handle is ipam.Check's
		}
		ok := false
		for _, w := range byAddr[a.addr] {
			if accounts(w, a.handle) {
				ok = true
				break
			}
		}
		if !ok {
			problems = append(problems, ipam.Problem{
				Kind: ProblemLeakedAddress, Key: a.key, Block: a.block, Address: a.addr.String(), Handle: a.handle, Node: a.node,
				Detail: fmt.Sprintf("%s is allocated to handle %s but no workload endpoint with that container has it (release with: brindlectl ipam release --ip=%s)", a.addr, a.handle, a.addr),
			})
		}
	}
	addrs := make([]netip.Addr, 0, len(byAddr))
	for a := range byAddr {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	for _, a := range addrs {
		for _, w := range byAddr[a] {
			h, ok := held[a]
			if ok && accounts(w, h) {
				continue
			}
			detail := fmt.Sprintf("workload endpoint %s/%s has %s, which IPAM does not hold", w.Namespace, w.Name, a)
			if ok {
				detail = fmt.Sprintf("workload endpoint %s/%s has %s, which IPAM holds for handle %s", w.Namespace, w.Name, a, h)
			}
			problems = append(problems, ipam.Problem{Kind: ProblemEndpointUnallocated, Key: w.Namespace + "/" + w.Name, Address: a.String(), Handle: h, Node: w.Spec.Node, Detail: detail})
		}
	}
	return problems, nil
}

func isTunnelHandle(h string) bool {
	for _, p := range tunnelHandlePrefixes {
		if strings.HasPrefix(h, p) {
			return true
		}
	}
	return h == "windows-reserved-ipam-handle"
}

func newIPAMReleaseCommand(opts *Options) *cobra.Command {
	var ipFlag, handle string
	cmd := &cobra.Command{
		Use:   "release --ip=ADDRESS [--handle=HANDLE] | --handle=HANDLE",
		Short: "Release an address, or every address of a handle",
		Long: `With --ip, releases that address; adding --handle makes the release
conditional on the address being held by that handle. With --handle alone,
releases every address the handle holds and deletes the handle. Releasing
an address that is not allocated is an error (exit status 1).`,
		Example: `  brindlectl ipam release --ip=10.65.0.7
  brindlectl ipam release --ip=10.65.0.7 --handle=k8s-pod-network.4f2a...
  brindlectl ipam release --handle=k8s-pod-network.4f2a...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ipFlag == "" && handle == "" {
				return errors.New("ipam release: give --ip, --handle or both")
			}
			var addr netip.Addr
			if ipFlag != "" {
				var err error
				if addr, err = netip.ParseAddr(ipFlag); err != nil {
					return fmt.Errorf("--ip %q: not an IP address", ipFlag)
				}
			}
			return withIPAM(cmd, opts, func(ctx context.Context, _ *datastore.Client, m *ipam.IPAM) error {
				if !addr.IsValid() {
					got, err := m.ReleaseByHandle(ctx, handle)
					if err != nil {
						return fmt.Errorf("ipam release: handle %s: %w", handle, err)
					}
					fmt.Fprintf(opts.Streams.Out, "Released %d address(es) of handle %s: %s\n", len(got), handle, joinAddrs(got))
					return nil
				}
				unalloc, err := m.ReleaseIPs(ctx, ipam.ReleaseOptions{Address: addr, HandleID: handle})
				if err != nil {
					return fmt.Errorf("ipam release: %s: %w", addr, err)
				}
				if len(unalloc) > 0 {
					return fmt.Errorf("ipam release: %s is not allocated", addr)
				}
				fmt.Fprintf(opts.Streams.Out, "Released %s\n", addr)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&ipFlag, "ip", "", "address to release")
	cmd.Flags().StringVar(&handle, "handle", "", "handle whose addresses to release (with --ip: the handle that must hold it)")
	return cmd
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return orNone(strings.Join(s, ", "))
}
