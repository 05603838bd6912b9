package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/brindle-net/brindle/policy/scenario"
)

// Matrix probes every ordered pair of the lab's pods on each port
// ("6379", "6379/TCP", "53/UDP", "ICMP") with real packets, under whatever
// policy the datastore holds now. The result has no expectations.
func Matrix(ctx context.Context, cfg Config, st *State, ports []string, o RunOptions) (*RunResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if len(st.Pods) < 2 {
		return nil, fmt.Errorf("lab %s has %d pods: add some with `brindle lab pod add`", st.Name, len(st.Pods))
	}
	sc := &scenario.Scenario{Name: "lab " + st.Name}
	placement := map[string]string{}
	for _, p := range st.Pods {
		sc.Pods = append(sc.Pods, scenario.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: p.IP})
		placement[p.ID()] = p.Host
	}
	for _, spec := range ports {
		port, proto, err := scenario.ParsePortProtocol(spec)
		if err != nil {
			return nil, &BadInputError{fmt.Errorf("--ports: %w", err)}
		}
		for _, a := range st.Pods {
			for _, b := range st.Pods {
				if a.ID() != b.ID() {
					sc.Probes = append(sc.Probes, scenario.Probe{From: a.ID(), To: b.ID(), Port: port, Protocol: proto})
				}
			}
		}
	}
	built, err := sc.Build()
	if err != nil {
		return nil, &BadInputError{err}
	}
	// Whatever was written last (brindlectl apply ...) is in the kernel
	// before the first probe.
	client, err := st.Client(ctx, cfg.Logger)
	if err != nil {
		return nil, err
	}
	rev, err := client.Revision(ctx)
	client.Close()
	if err != nil {
		return nil, err
	}
	if err := WaitProgrammed(ctx, st, rev, 60*time.Second); err != nil {
		return nil, err
	}
	res := &RunResult{Lab: st.Name, Built: built, Placement: placement}
	if res.Probes, err = probeAll(ctx, st, built, o); err != nil {
		return nil, err
	}
	for i := range res.Probes {
		r := &res.Probes[i]
		// No policy was given to the evaluator here: only packets count.
		r.Evaluator = r.Result.Allowed
		if r.Skipped != "" {
			res.Skipped++
		}
	}
	return res, nil
}

// WriteMatrix prints a Matrix result.
func (res *RunResult) WriteMatrix(out interface{ Write([]byte) (int, error) }) error {
	return writeText(out, res, false)
}
