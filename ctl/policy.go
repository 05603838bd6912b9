package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

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
		err = scenario.WriteText(out, built, results)
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

// jsonProbe is one probe in policy check's JSON output.
type jsonProbe struct {
	scenario.JSONProbe
	Reason  string         `json:"reason"`
	Egress  policy.Verdict `json:"egress"`
	Ingress policy.Verdict `json:"ingress"`
}

func writeCheckJSON(out io.Writer, sc *scenario.Scenario, results []scenario.ProbeResult, wrong int) error {
	doc := struct {
		Name   string      `json:"name"`
		Probes []jsonProbe `json:"probes"`
		Total  int         `json:"total"`
		Wrong  int         `json:"wrong"`
	}{Name: sc.Name, Total: len(results), Wrong: wrong, Probes: []jsonProbe{}}
	for i := range results {
		r := &results[i]
		eg, in := r.Result.Egress, r.Result.Ingress
		eg.Trace, in.Trace = nil, nil
		doc.Probes = append(doc.Probes, jsonProbe{
			JSONProbe: scenario.NewJSONProbe(r, protoName(r.Probe.Protocol)),
			Reason:    r.Result.Deciding().String(), Egress: eg, Ingress: in,
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
