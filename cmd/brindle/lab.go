package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/lab"
)

// labExit carries an exit status for `brindle lab run` (1: wrong
// expectation, 2: bad input), as `brindlectl policy check` uses them.
type labExit struct {
	code int
	err  error
}

func (e *labExit) Error() string { return e.err.Error() }

// newLabCommand is `brindle lab`: a multi-host lab in network namespaces.
func newLabCommand(logger *slog.Logger) *cobra.Command {
	var name, stateDir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build a multi-host Brindle network on this machine and test policy with real packets",
		Long: `A lab is a real Brindle network built from Linux network namespaces on this
machine: hosts on two subnets joined by a router, one datastore (etcd), a
brindle node agent on every host, and pods wired by the real CNI plugin.
Everything is named after the lab (--name), so labs coexist. Needs root.

  brindle lab up --hosts 3            build it
  brindle lab pod add shop/db --host 2 --labels role=database
  brindle lab matrix --ports 6379,80  who reaches whom, with real packets
  brindle lab run scenario.yaml       a policy check scenario on real packets
  brindle lab status                  what runs
  brindle lab down                    remove everything`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", lab.DefaultName, "lab name (a-z, 0-9, '-'; at most 12)")
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", lab.DefaultStateDir, "where labs keep their state, sockets and logs")
	cfg := func(cmd *cobra.Command) lab.Config {
		return lab.Config{StateDir: stateDir, Logger: logger, Out: cmd.ErrOrStderr()}
	}
	load := func() (*lab.State, error) { return lab.Load(stateDir, name) }
	cmd.AddCommand(
		newLabUpCommand(&name, cfg),
		newLabDownCommand(&name, cfg),
		newLabStatusCommand(&name, &stateDir, cmd),
		newLabRunCommand(&name, cfg, load),
		newLabPodCommand(cfg, load),
		newLabMatrixCommand(cfg, load),
		&cobra.Command{
			Use:   "env",
			Short: "Print the environment for brindlectl to use the lab's datastore",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				st, err := load()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "export BRINDLE_ETCD_ENDPOINTS=%s\n", st.Endpoint)
				return nil
			},
		},
	)
	return cmd
}

// signalContext ends on SIGINT/SIGTERM, so a Ctrl-C runs the cleanup.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
}

func newLabUpCommand(name *string, cfg func(*cobra.Command) lab.Config) *cobra.Command {
	var o lab.UpOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build a lab: router, hosts, datastore, one agent per host, an IP pool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			o.Name = *name
			st, err := lab.Up(ctx, cfg(cmd), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %s is up: %d hosts, datastore %s\n", st.Name, len(st.Hosts), st.Endpoint)
			writeHosts(out, st)
			fmt.Fprintf(out, "\nUse it:  export BRINDLE_ETCD_ENDPOINTS=%s   (then brindlectl get ...)\n", st.Endpoint)
			fmt.Fprintf(out, "Pods:    brindle lab pod add NS/NAME --name %s --host 2 --labels k=v; brindle lab matrix --name %s --ports 80\n", st.Name, st.Name)
			fmt.Fprintf(out, "BGP:     brindlectl node status --socket %s\n", st.Hosts[0].Socket)
			fmt.Fprintf(out, "Remove:  brindle lab down --name %s\n", st.Name)
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Hosts, "hosts", 3, "number of hosts")
	cmd.Flags().BoolVar(&o.TOR, "tor", false, "run BIRD 2 in the router as a top-of-rack BGP router peering with every host")
	cmd.Flags().StringVar(&o.VXLANMode, "vxlan", "", "IPPool vxlanMode: Never (default), Always or CrossSubnet")
	return cmd
}

func writeHosts(out io.Writer, st *lab.State) {
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNETNS\tADDRESS\tAGENT SOCKET")
	for _, h := range st.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.NS, h.Addr, h.Socket)
	}
	role := "router"
	if st.TOR {
		role = "router (BIRD)"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s, 172.30.2.1/24\t%s\n", role, st.Router.NS, st.Router.Addr, st.Router.Socket)
	fmt.Fprintf(tw, "outside\t%s\t172.30.99.2/24\t\n", st.Outside)
	tw.Flush()
	if st.TOR {
		fmt.Fprintf(out, "The router runs BIRD 2 as a top-of-rack router (AS 64513; host N is AS 6500N): birdc -s %s show route\n", st.BirdSocket())
	} else {
		fmt.Fprintln(out, "The router runs a brindle node without workloads: a BGP mesh member, so it learns every block.")
	}
}

func newLabDownCommand(name *string, cfg func(*cobra.Command) lab.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove a lab: processes, namespaces, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(context.Background(), cfg(cmd), *name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s removed\n", *name)
			return nil
		},
	}
}

func newLabStatusCommand(name, stateDir *string, parent *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the labs, their hosts, agents and pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names := []string{*name}
			if !parent.PersistentFlags().Changed("name") {
				var err error
				if names, err = lab.List(*stateDir); err != nil {
					return err
				}
				if len(names) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no labs (brindle lab up --hosts 3 builds one)")
					return nil
				}
			}
			for _, n := range names {
				st, err := lab.Load(*stateDir, n)
				if err != nil {
					return err
				}
				writeStatus(cmd.Context(), cmd.OutOrStdout(), st)
			}
			return nil
		},
	}
}

func writeStatus(ctx context.Context, out io.Writer, st *lab.State) {
	fmt.Fprintf(out, "lab %s: datastore %s, state %s\n", st.Name, st.Endpoint, st.Dir)
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tRUNNING\tAGENT\tLOG")
	alive := st.ProcAlive()
	sockets := map[string]string{"node/router": st.Router.Socket}
	for _, h := range st.Hosts {
		sockets["node/"+h.Name] = h.Socket
	}
	for _, p := range st.Procs {
		agentState := ""
		if sock := sockets[p.Role]; sock != "" && alive[p.Role] {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := agent.NewClient(sock).Status(cctx)
			cancel()
			switch {
			case err != nil:
				agentState = "no answer"
			case s.Programmed:
				agentState = fmt.Sprintf("programmed rev %d, %d endpoints", s.ProgrammedRevision, s.LocalEndpoints)
			case s.InSync:
				agentState = "in sync, programming"
			default:
				agentState = "syncing"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%s\t%s\n", p.Role, p.PID, alive[p.Role], agentState, p.Log)
	}
	tw.Flush()
	if len(st.Pods) > 0 {
		fmt.Fprintln(out)
		writePods(out, st)
	}
	fmt.Fprintln(out)
}

func writePods(out io.Writer, st *lab.State) {
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tHOST\tIP\tNETNS\tLABELS")
	for _, p := range st.Pods {
		var ls []string
		for k, v := range p.Labels {
			ls = append(ls, k+"="+v)
		}
		sort.Strings(ls)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID(), p.Host, p.IP, p.NetNS, strings.Join(ls, ","))
	}
	tw.Flush()
}

func newLabRunCommand(name *string, cfg func(*cobra.Command) lab.Config, load func() (*lab.State, error)) *cobra.Command {
	var o lab.RunOptions
	var hosts int
	var output string
	cmd := &cobra.Command{
		Use:   "run SCENARIO",
		Short: "Run a policy check scenario on the lab with real packets",
		Long: `Runs a scenario in the format of 'brindlectl policy check' on the lab: its pods
are created through the CNI plugin, spread over the hosts (ip requested from
IPAM when given), its policies applied through the datastore, a server
started on every listed and probed port, and every probe sent as real
packets, in parallel. externalProbes come from the outside host, with the
probe's source address. The output is policy check's matrix; a "*" marks a
probe where the reference evaluator disagrees with the packets. A
pod-to-itself probe never leaves the pod, so it is marked "-" (not
policed) and not counted. Afterwards the pods and the policies the run
created are removed (--keep leaves them).

If the lab is not up, a lab of --hosts hosts is built for the run and
removed afterwards.

Exit status: 0 every expectation holds, 1 some probe's expectation is
wrong, 2 bad input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runLab(cmd, args, name, cfg, load, hosts, output, o)
			var le *labExit
			if errors.As(err, &le) {
				// policy check's exit status, after every cleanup ran.
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", le.err)
				os.Exit(le.code)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "leave the scenario's pods and policies in the lab")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", lab.DefaultProbeTimeout, "how long a probe waits for an answer")
	cmd.Flags().IntVar(&hosts, "hosts", 3, "hosts of the lab built for the run when none is up")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runLab(cmd *cobra.Command, args []string, name *string, cfg func(*cobra.Command) lab.Config, load func() (*lab.State, error), hosts int, output string, o lab.RunOptions) error {
	ctx, stop := signalContext(cmd)
	defer stop()
	data, err := os.ReadFile(args[0])
	if err != nil {
		return &labExit{2, err}
	}
	if output != "text" && output != "json" {
		return &labExit{2, fmt.Errorf("lab run: -o %q: want text or json", output)}
	}
	// Bad input is exit 2 before any lab is built.
	if err := lab.Check(data); err != nil {
		return &labExit{2, fmt.Errorf("lab run: %s: %w", args[0], err)}
	}
	c := cfg(cmd)
	st, err := load()
	if errors.Is(err, lab.ErrNotUp) {
		fmt.Fprintf(cmd.ErrOrStderr(), "lab %s is not up: building one with %d hosts for this run\n", *name, hosts)
		if st, err = lab.Up(ctx, c, lab.UpOptions{Name: *name, Hosts: hosts}); err != nil {
			return err
		}
		defer func() {
			if err := lab.Down(context.Background(), c, *name); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "error: lab down:", err)
			}
		}()
	} else if err != nil {
		return err
	}
	res, err := lab.Run(ctx, c, st, data, o)
	var bad *lab.BadInputError
	if errors.As(err, &bad) {
		return &labExit{2, fmt.Errorf("lab run: %s: %w", args[0], err)}
	}
	if err != nil {
		return err
	}
	write := res.WriteText
	if output == "json" {
		write = res.WriteJSON
	}
	if err := write(cmd.OutOrStdout()); err != nil {
		return err
	}
	if res.Wrong > 0 {
		return &labExit{1, fmt.Errorf("lab run: %s: %d probes have the wrong expectation", args[0], res.Wrong)}
	}
	return nil
}

func newLabPodCommand(cfg func(*cobra.Command) lab.Config, load func() (*lab.State, error)) *cobra.Command {
	pod := &cobra.Command{Use: "pod", Short: "Add, list and delete the lab's pods"}
	var spec lab.PodSpec
	var labels map[string]string
	add := &cobra.Command{
		Use:   "add NAMESPACE/NAME --host HOST [--labels k=v,...]",
		Short: "Create a pod through the CNI plugin on a host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, n, ok := strings.Cut(args[0], "/")
			if !ok {
				return fmt.Errorf("pod %q: want NAMESPACE/NAME", args[0])
			}
			st, err := load()
			if err != nil {
				return err
			}
			spec.Namespace, spec.Name, spec.Labels = ns, n, labels
			ctx, stop := signalContext(cmd)
			defer stop()
			p, err := lab.AddPod(ctx, cfg(cmd), st, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pod %s on %s: %s\n", p.ID(), p.Host, p.IP)
			return nil
		},
	}
	add.Flags().StringVar(&spec.Host, "host", "host1", "host (name or number)")
	add.Flags().StringToStringVar(&labels, "labels", nil, "pod labels, e.g. role=frontend,compliance=PCI")
	add.Flags().StringVar(&spec.IP, "ip", "", "request this address from IPAM")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the lab's pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := load()
			if err != nil {
				return err
			}
			writePods(cmd.OutOrStdout(), st)
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "del NAMESPACE/NAME...",
		Short: "Delete pods (CNI DEL, then their namespace)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := load()
			if err != nil {
				return err
			}
			return lab.RemovePods(cmd.Context(), cfg(cmd), st, args)
		},
	}
	pod.AddCommand(add, list, del)
	return pod
}

func newLabMatrixCommand(cfg func(*cobra.Command) lab.Config, load func() (*lab.State, error)) *cobra.Command {
	var ports []string
	var o lab.RunOptions
	cmd := &cobra.Command{
		Use:   "matrix --ports 6379/TCP,80",
		Short: "Probe every pair of the lab's pods on some ports, with real packets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			res, err := lab.Matrix(ctx, cfg(cmd), st, ports, o)
			if err != nil {
				return err
			}
			return res.WriteMatrix(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringSliceVar(&ports, "ports", []string{"80/TCP"}, "ports to probe: PORT[/PROTOCOL] or ICMP, comma-separated")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", lab.DefaultProbeTimeout, "how long a probe waits for an answer")
	return cmd
}
