package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/policy/scenario"
)

// exitError carries a process exit code to cmd/brindlectl.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is what brindlectl exits with.
func (e *exitError) ExitCode() int { return e.code }

// Exit codes of policy check.
const (
	exitWrongExpectation = 1
	exitBadInput         = 2
)

func badInput(format string, args ...any) error {
	return &exitError{code: exitBadInput, err: fmt.Errorf(format, args...)}
}

// addPolicyCommands adds "policy check".
func addPolicyCommands(root *cobra.Command, opts *Options) {
	pol := &cobra.Command{
		Use:   "policy",
		Short: "Work with network policy",
	}
	pol.AddCommand(newPolicyCheckCommand(opts))
	root.AddCommand(pol)
}

type policyCheckFlags struct {
	file    string
	output  string
	explain bool
}

func newPolicyCheckCommand(opts *Options) *cobra.Command {
	var f policyCheckFlags
	cmd := &cobra.Command{
		Use:   "check -f SCENARIO [--explain FROM TO PORT/PROTOCOL]",
		Short: "Evaluate a policy scenario's probes with the reference evaluator",
		Long: `Reads a scenario (namespaces, pods, policies and probes), evaluates every
probe with Brindle's reference policy evaluator and prints a reachability
matrix per port and protocol, marking probes whose expected outcome is wrong
and explaining the rule that decided each of them.

Exit status: 0 when every expectation holds, 1 when any is wrong, 2 on bad
input. With --explain FROM TO PORT/PROTOCOL (FROM is a pod "ns/name" or an
IP address, TO a pod) it prints the walk-through for that one packet.`,
		Example: `  brindlectl policy check -f testdata/scenarios/k8s-allow-from-frontend.yaml
  brindlectl policy check -f scenario.yaml -o json
  brindlectl policy check -f scenario.yaml --explain x/a x/b 80/TCP`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyCheck(opts, &f, args)
		},
	}
	cmd.Flags().StringVarP(&f.file, "filename", "f", "", `scenario file ("-" for standard input)`)
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&f.explain, "explain", false, "explain one packet: FROM TO PORT/PROTOCOL as arguments")
	return cmd
}

func runPolicyCheck(opts *Options, f *policyCheckFlags, args []string) error {
	if f.file == "" {
		return badInput("policy check: -f SCENARIO is required")
	}
	if f.output != "text" && f.output != "json" {
		return badInput("policy check: -o %q: want text or json", f.output)
	}
	if f.explain != (len(args) > 0) {
		if f.explain {
			return badInput("policy check: --explain needs FROM TO PORT/PROTOCOL")
		}
		return badInput("policy check: unexpected arguments %q (did you mean --explain?)", args)
	}
	var data []byte
	var err error
	if f.file == "-" {
		data, err = io.ReadAll(opts.Streams.In)
	} else {
		data, err = os.ReadFile(f.file)
	}
	if err != nil {
		return badInput("policy check: %w", err)
	}
	sc, err := scenario.Parse(data)
	if err != nil {
		return badInput("policy check: %s: %w", f.file, err)
	}
	built, err := sc.Build()
	if err != nil {
		return badInput("policy check: %s: %w", f.file, err)
	}
	out := opts.Streams.Out
	if f.explain {
		return explainOne(out, built, args, f.output)
	}
	results := built.Run(true)
	wrong := 0
	for _, r := range results {
		if r.Wrong {
			wrong++
		}
	}
	if f.output == "json" {
		err = writeCheckJSON(out, sc, results, wrong)
	} else {
		err = writeCheckText(out, built, results, wrong)
	}
	if err != nil {
		return err
	}
	if wrong > 0 {
		return &exitError{code: exitWrongExpectation, err: fmt.Errorf("policy check: %s: %d of %d probes have the wrong expectation", f.file, wrong, len(results))}
	}
	return nil
}

func explainOne(out io.Writer, b *scenario.Built, args []string, output string) error {
	if len(args) != 3 {
		return badInput("policy check: --explain needs exactly FROM TO PORT/PROTOCOL, got %d arguments", len(args))
	}
	port, proto, err := scenario.ParsePortProtocol(args[2])
	if err != nil {
		return badInput("policy check: --explain: %w", err)
	}
	probe := scenario.Probe{From: args[0], To: args[1], Port: port, Protocol: proto}
	_, isPod := b.PodIP[args[0]]
	pk, err := b.Packet(&probe, !isPod)
	if err != nil {
		return badInput("policy check: --explain: %w", err)
	}
	r := b.Evaluator.Evaluate(pk)
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(out, "%s -> %s %s (%s -> %s): %s\n", args[0], args[1], probe.Label(), pk.Src, pk.Dst, verdict)
	for _, v := range []policy.Verdict{r.Egress, r.Ingress} {
		fmt.Fprintf(out, "\n%s\n", v)
		for _, s := range v.Trace {
			fmt.Fprintf(out, "  - %s\n", s)
		}
	}
	return nil
}

type jsonProbe struct {
	From     string         `json:"from"`
	To       string         `json:"to"`
	Port     uint16         `json:"port,omitempty"`
	Protocol string         `json:"protocol"`
	External bool           `json:"external,omitempty"`
	Expected *bool          `json:"expected,omitempty"`
	Allowed  bool           `json:"allowed"`
	Wrong    bool           `json:"wrong"`
	Reason   string         `json:"reason"`
	Egress   policy.Verdict `json:"egress"`
	Ingress  policy.Verdict `json:"ingress"`
}

func writeCheckJSON(out io.Writer, sc *scenario.Scenario, results []scenario.ProbeResult, wrong int) error {
	doc := struct {
		Name   string      `json:"name"`
		Probes []jsonProbe `json:"probes"`
		Total  int         `json:"total"`
		Wrong  int         `json:"wrong"`
	}{Name: sc.Name, Total: len(results), Wrong: wrong, Probes: []jsonProbe{}}
	for _, r := range results {
		eg, in := r.Result.Egress, r.Result.Ingress
		eg.Trace, in.Trace = nil, nil
		doc.Probes = append(doc.Probes, jsonProbe{
			From: r.Probe.From, To: r.Probe.To, Port: r.Probe.Port, Protocol: protoName(r.Probe.Protocol),
			External: r.External, Expected: r.Probe.Allowed, Allowed: r.Result.Allowed, Wrong: r.Wrong,
			Reason: r.Result.Deciding().String(), Egress: eg, Ingress: in,
		})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func protoName(p string) string {
	if p == "" {
		p = "TCP"
	}
	if n, err := policy.ParseProtocol(p); err == nil {
		return policy.ProtocolName(n)
	}
	return p
}

// cell renders one matrix cell: A allowed, D denied, with "!" when the
// expectation was wrong and "?" when there was none.
func cell(r scenario.ProbeResult) string {
	s := "D"
	if r.Result.Allowed {
		s = "A"
	}
	switch {
	case r.Wrong:
		s += "!"
	case r.Probe.Allowed == nil:
		s += "?"
	}
	return s
}

func writeCheckText(out io.Writer, b *scenario.Built, results []scenario.ProbeResult, wrong int) error {
	sc := b.Scenario
	var w strings.Builder
	fmt.Fprintf(&w, "scenario %s: %d probes, %d wrong\n", sc.Name, len(results), wrong)
	if sc.Description != "" {
		fmt.Fprintf(&w, "  %s\n", strings.TrimSpace(sc.Description))
	}
	// One matrix per port/protocol over the pods that appear in probes.
	var labels []string
	cells := map[string]map[[2]string]scenario.ProbeResult{}
	for _, r := range results {
		if r.External {
			continue
		}
		l := r.Probe.Label()
		if _, ok := cells[l]; !ok {
			cells[l] = map[[2]string]scenario.ProbeResult{}
			labels = append(labels, l)
		}
		cells[l][[2]string{r.Probe.From, r.Probe.To}] = r
	}
	for _, l := range labels {
		var froms, tos []string
		seenF, seenT := map[string]bool{}, map[string]bool{}
		for _, id := range b.PodOrder {
			for k := range cells[l] {
				if k[0] == id && !seenF[id] {
					seenF[id] = true
					froms = append(froms, id)
				}
				if k[1] == id && !seenT[id] {
					seenT[id] = true
					tos = append(tos, id)
				}
			}
		}
		width := len("from \\ to")
		for _, id := range froms {
			width = max(width, len(id))
		}
		fmt.Fprintf(&w, "\n%s\n%-*s", l, width, "from \\ to")
		colw := make([]int, len(tos))
		for i, id := range tos {
			colw[i] = max(len(id), 2)
			fmt.Fprintf(&w, "  %-*s", colw[i], id)
		}
		w.WriteString("\n")
		for _, from := range froms {
			fmt.Fprintf(&w, "%-*s", width, from)
			for i, to := range tos {
				c := "."
				if r, ok := cells[l][[2]string{from, to}]; ok {
					c = cell(r)
				}
				fmt.Fprintf(&w, "  %-*s", colw[i], c)
			}
			w.WriteString("\n")
		}
	}
	var ext []scenario.ProbeResult
	for _, r := range results {
		if r.External {
			ext = append(ext, r)
		}
	}
	if len(ext) > 0 {
		w.WriteString("\nexternal\n")
		for _, r := range ext {
			fmt.Fprintf(&w, "  %-18s -> %-20s %-10s %s\n", r.Probe.From, r.Probe.To, r.Probe.Label(), cell(r))
		}
	}
	w.WriteString("\nA allowed, D denied, ! expectation wrong, ? no expectation, . not probed\n")
	if wrong > 0 {
		w.WriteString("\nwrong expectations:\n")
		for _, r := range results {
			if !r.Wrong {
				continue
			}
			got := "denied"
			if r.Result.Allowed {
				got = "allowed"
			}
			fmt.Fprintf(&w, "  %s -> %s %s: expected %s, got %s\n", r.Probe.From, r.Probe.To, r.Probe.Label(), expectWord(*r.Probe.Allowed), got)
			fmt.Fprintf(&w, "    %s\n    %s\n", r.Result.Egress, r.Result.Ingress)
		}
	}
	_, err := io.WriteString(out, w.String())
	return err
}

func expectWord(b bool) string {
	if b {
		return "allowed"
	}
	return "denied"
}
