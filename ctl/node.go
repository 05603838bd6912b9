package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brindle-net/brindle/routing"
)

// DefaultNodeSocket is where `brindle node` serves its local API.
const DefaultNodeSocket = "/var/run/brindle/agent.sock"

// addNodeCommands adds "node status".
func addNodeCommands(root *cobra.Command, opts *Options) {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Inspect this host's node (BGP sessions)",
	}
	cmd.AddCommand(newNodeStatusCommand(opts))
	root.AddCommand(cmd)
}

func newNodeStatusCommand(opts *Options) *cobra.Command {
	var output, socket string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this host's BGP sessions and what it advertises",
		Long: `Asks the local brindle node (over its unix socket) for its BGP status and
prints one row per session: peer address, peer type, state, since when
(and for how long), routes received and advertised; then the prefixes this
node advertises and the kernel routes BGP put there (protocol 99).
Exits 1 when brindle node cannot be reached.`,
		Example: `  brindlectl node status
  brindlectl node status --socket /run/lab/h1/agent.sock -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := routing.FetchStatus(ctx, socket)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSONTo(opts.Streams.Out, st)
			}
			return printNodeStatus(opts.Streams.Out, st, time.Now())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", DefaultNodeSocket, "unix socket of brindle node's local API")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for brindle node")
	return cmd
}

// printNodeStatus renders st like calicoctl node status, with route
// counts; now anchors the uptimes.
func printNodeStatus(w io.Writer, st routing.DaemonStatus, now time.Time) error {
	head := fmt.Sprintf("BGP on node %s: %s", st.Node, st.State)
	if d := st.Desired; d != nil && d.Enabled {
		head += fmt.Sprintf(" (AS %d, router ID %s, port %d)", d.ASNumber, d.RouterID, d.ListenPort)
	}
	fmt.Fprintln(w, head)
	if st.Reason != "" {
		fmt.Fprintln(w, "  "+st.Reason)
	}
	if st.LastApplyError != "" {
		fmt.Fprintln(w, "  last apply failed: "+st.LastApplyError)
	}
	if st.State == "disabled" {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "IPv4 BGP sessions")
	if len(st.Peers) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER ADDRESS\tPEER TYPE\tSTATE\tSINCE\tINFO\tROUTES RECEIVED\tROUTES ADVERTISED")
		for _, p := range st.Peers {
			state := "down"
			if p.State == "Established" {
				state = "up"
			} else if p.Passive && (p.State == "Idle" || p.State == "Active") {
				state = "passive"
			}
			addr := p.Address.String()
			if p.Port != 0 && p.Port != routing.DefaultListenPort {
				addr = fmt.Sprintf("%s port %d", addr, p.Port)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", addr, p.TypeString(), state, since(p.Since, now), p.State, p.RoutesReceived, p.RoutesAdvertised)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if d := st.Desired; d != nil && d.Enabled {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Advertised prefixes")
		if len(d.Prefixes) == 0 {
			fmt.Fprintln(w, "  none")
		}
		for _, p := range d.Prefixes {
			fmt.Fprintln(w, "  "+p.String())
		}
		for _, p := range d.Problems {
			fmt.Fprintln(w, "  skipped: "+p)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Kernel routes from BGP")
	if strings.TrimSpace(st.Routes) == "" {
		fmt.Fprintln(w, "  none")
	} else {
		for _, l := range strings.Split(st.Routes, "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
	for _, p := range st.InputProblems {
		fmt.Fprintln(w, "datastore value skipped: "+p)
	}
	return nil
}

// since renders a session's start: time of day (date too when not today)
// and how long ago, e.g. "10:04:05 (3m2s)".
func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t = t.In(now.Location())
	layout := "15:04:05"
	if t.Format(time.DateOnly) != now.Format(time.DateOnly) {
		layout = time.DateTime
	}
	ago := now.Sub(t).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return fmt.Sprintf("%s (%s)", t.Format(layout), ago)
}
