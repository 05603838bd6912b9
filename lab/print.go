package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/brindle-net/brindle/policy/scenario"
)

// cell renders one matrix cell as `policy check` does (A allowed, D
// denied, "!" expectation wrong, "?" no expectation), with "-" for a
// pod-to-itself probe (not policed), "S" for a skipped probe and a "*"
// where the reference evaluator disagrees with the packets.
func (r *ProbeResult) cell(expectations bool) string {
	switch {
	case r.NotPoliced:
		return "-"
	case r.Skipped != "":
		return "S"
	}
	s := r.ProbeResult.Cell()
	if !expectations {
		s = strings.TrimSuffix(s, "?")
	}
	if r.Disagrees() {
		s += "*"
	}
	return s
}

// WriteText prints the run like `brindlectl policy check`: a matrix per
// port/protocol, external probes, the wrong expectations; then what only
// the lab knows: placement, probes not policed or skipped, and where the
// evaluator disagrees with the packets.
func (res *RunResult) WriteText(out io.Writer) error {
	return writeText(out, res, true)
}

func writeText(out io.Writer, res *RunResult, expectations bool) error {
	b := res.Built
	var w strings.Builder
	if expectations {
		counted := len(res.Probes) - res.NotPol - res.Skipped
		scenario.WriteHeading(&w, b.Scenario, counted, res.Wrong, fmt.Sprintf(" (real packets on lab %s)", res.Lab))
	}
	base := make([]scenario.ProbeResult, len(res.Probes))
	for i := range res.Probes {
		base[i] = res.Probes[i].ProbeResult
	}
	scenario.WriteMatrices(&w, b.PodOrder, base, scenario.MatrixOptions{
		Cell:          func(i int) string { return res.Probes[i].cell(expectations) },
		ExternalTitle: "external (from the outside host)",
	})
	var marks []string
	if res.NotPol > 0 {
		marks = append(marks, "- not policed")
	}
	if res.Skipped > 0 {
		marks = append(marks, "S skipped")
	}
	if res.Disagree > 0 {
		marks = append(marks, "* evaluator disagrees")
	}
	fmt.Fprintf(&w, "\n%s\n", scenario.Legend(expectations, marks...))
	if res.NotPol > 0 {
		fmt.Fprintf(&w, "\n%d pod-to-itself probes are not policed: the packet never leaves the pod, so no host\npolicy sees it (policy check evaluates them; the lab does not count them).\n", res.NotPol)
	}
	if res.Skipped > 0 {
		reasons := map[string]int{}
		for _, r := range res.Probes {
			if r.Skipped != "" {
				reasons[r.Skipped]++
			}
		}
		keys := make([]string, 0, len(reasons))
		for k := range reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.WriteString("\nskipped:\n")
		for _, k := range keys {
			fmt.Fprintf(&w, "  %d probes: %s\n", reasons[k], k)
		}
	}
	if res.Wrong > 0 {
		scenario.WriteWrong(&w, base)
	}
	if res.Disagree > 0 {
		fmt.Fprintf(&w, "\nthe reference evaluator disagrees with the packets on %d probes:\n", res.Disagree)
		for _, r := range res.Probes {
			if r.Disagrees() {
				fmt.Fprintf(&w, "  %s -> %s %s: packets %s, evaluator %s\n", r.Probe.From, r.Probe.To, r.Probe.Label(), scenario.AllowedWord(r.Result.Allowed), scenario.AllowedWord(r.Evaluator))
			}
		}
	}
	if len(res.Placement) > 0 && expectations {
		hosts := map[string][]string{}
		var names []string
		for pod, h := range res.Placement {
			if hosts[h] == nil {
				names = append(names, h)
			}
			hosts[h] = append(hosts[h], pod)
		}
		sort.Strings(names)
		w.WriteString("\npods:")
		for _, h := range names {
			sort.Strings(hosts[h])
			fmt.Fprintf(&w, " %s: %s;", h, strings.Join(hosts[h], ", "))
		}
		w.WriteString("\n")
	}
	_, err := io.WriteString(out, w.String())
	return err
}

// jsonProbe is one probe in WriteJSON's output: policy check's fields
// plus the lab's.
type jsonProbe struct {
	scenario.JSONProbe
	Evaluator  bool   `json:"evaluator"`
	NotPoliced bool   `json:"notPoliced,omitempty"`
	Skipped    string `json:"skipped,omitempty"`
	Reason     string `json:"reason"`
}

// WriteJSON prints the run for machines, in the shape of `policy check -o
// json` (name, probes, total, wrong) with the lab's additions.
func (res *RunResult) WriteJSON(out io.Writer) error {
	doc := struct {
		Name       string            `json:"name"`
		Lab        string            `json:"lab"`
		Probes     []jsonProbe       `json:"probes"`
		Total      int               `json:"total"`
		Wrong      int               `json:"wrong"`
		NotPoliced int               `json:"notPoliced"`
		Skipped    int               `json:"skipped"`
		Disagree   int               `json:"evaluatorDisagrees"`
		Placement  map[string]string `json:"placement,omitempty"`
	}{Name: res.Built.Scenario.Name, Lab: res.Lab, Probes: []jsonProbe{}, Wrong: res.Wrong,
		NotPoliced: res.NotPol, Skipped: res.Skipped, Disagree: res.Disagree, Placement: res.Placement}
	doc.Total = len(res.Probes) - res.NotPol - res.Skipped
	for i := range res.Probes {
		r := &res.Probes[i]
		doc.Probes = append(doc.Probes, jsonProbe{
			JSONProbe: scenario.NewJSONProbe(&r.ProbeResult, protoName(r.Probe.Protocol)),
			Evaluator: r.Evaluator, NotPoliced: r.NotPoliced, Skipped: r.Skipped, Reason: r.Result.Deciding().String(),
		})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
