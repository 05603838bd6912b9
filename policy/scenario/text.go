package scenario

import (
	"fmt"
	"io"
	"strings"
)

// This file renders probe results as text: the output of `brindlectl
// policy check`, whose parts `brindle lab run` reuses with marks of its own.
// The parts write into a strings.Builder so that a caller assembles the
// whole text before it does any I/O.

// Cell renders r as one cell of a reachability matrix: "A" when the packet
// was allowed, "D" when it was denied, followed by "!" when the probe's
// expectation was wrong or "?" when the probe had none.
func (r *ProbeResult) Cell() string {
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

// Legend returns the line explaining the cells: with expectations it
// includes "!" and "?"; extra entries ("S skipped") follow ". not probed".
func Legend(expectations bool, extra ...string) string {
	parts := []string{"A allowed", "D denied"}
	if expectations {
		parts = append(parts, "! expectation wrong", "? no expectation")
	}
	parts = append(parts, ". not probed")
	return strings.Join(append(parts, extra...), ", ")
}

// WriteHeading writes the first line, "scenario NAME: N probes, W wrong",
// with note appended (a caller's own words, "" for none), and the
// scenario's description indented on the next line when it has one.
func WriteHeading(w *strings.Builder, sc *Scenario, probes, wrong int, note string) {
	fmt.Fprintf(w, "scenario %s: %d probes, %d wrong%s\n", sc.Name, probes, wrong, note)
	if sc.Description != "" {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(sc.Description))
	}
}

// MatrixOptions changes how WriteMatrices renders results.
type MatrixOptions struct {
	// Cell renders results[i] as a cell; nil means results[i].Cell().
	Cell func(i int) string
	// ExternalTitle heads the list of external probes; "" means
	// "external".
	ExternalTitle string
}

// WriteMatrices writes one matrix per port/protocol label, in the order the
// labels first appear in results, each preceded by a blank line and the
// label. Rows are the probes' sources and columns their destinations, both
// in podOrder (Built.PodOrder) and limited to pods that appear in that
// label's probes; a pair that was not probed is ".". External probes follow
// as a list under their title, one probe a line.
func WriteMatrices(w *strings.Builder, podOrder []string, results []ProbeResult, o MatrixOptions) {
	cellOf := o.Cell
	if cellOf == nil {
		cellOf = func(i int) string { return results[i].Cell() }
	}
	var labels []string
	cells := map[string]map[[2]string]int{} // label -> (from, to) -> index
	for i := range results {
		r := &results[i]
		if r.External {
			continue
		}
		l := r.Probe.Label()
		if _, ok := cells[l]; !ok {
			cells[l] = map[[2]string]int{}
			labels = append(labels, l)
		}
		cells[l][[2]string{r.Probe.From, r.Probe.To}] = i
	}
	for _, l := range labels {
		var froms, tos []string
		seenF, seenT := map[string]bool{}, map[string]bool{}
		for _, id := range podOrder {
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
		fmt.Fprintf(w, "\n%s\n%-*s", l, width, "from \\ to")
		colw := make([]int, len(tos))
		for i, id := range tos {
			colw[i] = max(len(id), 2)
			fmt.Fprintf(w, "  %-*s", colw[i], id)
		}
		w.WriteString("\n")
		for _, from := range froms {
			fmt.Fprintf(w, "%-*s", width, from)
			for i, to := range tos {
				c := "."
				if j, ok := cells[l][[2]string{from, to}]; ok {
					c = cellOf(j)
				}
				fmt.Fprintf(w, "  %-*s", colw[i], c)
			}
			w.WriteString("\n")
		}
	}
	title := o.ExternalTitle
	if title == "" {
		title = "external"
	}
	wroteTitle := false
	for i := range results {
		r := &results[i]
		if !r.External {
			continue
		}
		if !wroteTitle {
			fmt.Fprintf(w, "\n%s\n", title)
			wroteTitle = true
		}
		fmt.Fprintf(w, "  %-18s -> %-20s %-10s %s\n", r.Probe.From, r.Probe.To, r.Probe.Label(), cellOf(i))
	}
}

// WriteWrong writes, after a blank line, "wrong expectations:" and each
// result whose expectation was wrong, with the egress and ingress verdicts
// that decided it. It writes nothing when no result is wrong.
func WriteWrong(w *strings.Builder, results []ProbeResult) {
	head := "\nwrong expectations:\n"
	for i := range results {
		r := &results[i]
		if !r.Wrong || r.Probe.Allowed == nil {
			continue
		}
		w.WriteString(head)
		head = ""
		fmt.Fprintf(w, "  %s -> %s %s: expected %s, got %s\n", r.Probe.From, r.Probe.To, r.Probe.Label(), AllowedWord(*r.Probe.Allowed), AllowedWord(r.Result.Allowed))
		fmt.Fprintf(w, "    %s\n    %s\n", r.Result.Egress, r.Result.Ingress)
	}
}

// AllowedWord is "allowed" or "denied".
func AllowedWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// WriteText writes results as `brindlectl policy check` prints them: the
// heading, the matrices and external probes (WriteMatrices), the legend
// and the wrong expectations (WriteWrong).
func WriteText(out io.Writer, b *Built, results []ProbeResult) error {
	wrong := 0
	for i := range results {
		if results[i].Wrong {
			wrong++
		}
	}
	var w strings.Builder
	WriteHeading(&w, b.Scenario, len(results), wrong, "")
	WriteMatrices(&w, b.PodOrder, results, MatrixOptions{})
	fmt.Fprintf(&w, "\n%s\n", Legend(true))
	WriteWrong(&w, results)
	_, err := io.WriteString(out, w.String())
	return err
}

// JSONProbe is the part of a probe's JSON form that `policy check -o json`
// and `brindle lab run -o json` share. Each embeds it first in its own
// struct and adds its fields after it (encoding/json promotes the fields of
// an embedded struct, in place).
type JSONProbe struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     uint16 `json:"port,omitempty"`
	Protocol string `json:"protocol"`
	External bool   `json:"external,omitempty"`
	Expected *bool  `json:"expected,omitempty"`
	Allowed  bool   `json:"allowed"`
	Wrong    bool   `json:"wrong"`
}

// NewJSONProbe fills a JSONProbe from r; protocol is the probe's protocol
// as the caller names it (Probe.Protocol is "" for TCP).
func NewJSONProbe(r *ProbeResult, protocol string) JSONProbe {
	return JSONProbe{
		From: r.Probe.From, To: r.Probe.To, Port: r.Probe.Port, Protocol: protocol,
		External: r.External, Expected: r.Probe.Allowed, Allowed: r.Result.Allowed, Wrong: r.Wrong,
	}
}
