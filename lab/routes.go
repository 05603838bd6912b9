package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/brindle-net/brindle/routing"
)

// route is one line of `ip -j route show`.
type route struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
}

// Routes lists a namespace's main-table IPv4 routes.
func Routes(ctx context.Context, netns string) ([]route, error) {
	out, err := output(ctx, nil, "ip", "-j", "-n", netns, "-4", "route", "show")
	if err != nil {
		return nil, err
	}
	var rs []route
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("ip -j route show in %s: %w", netns, err)
	}
	return rs, nil
}

// covered reports whether a route other than the default route (and other
// than a blackhole or unreachable one) leads to a.
func covered(rs []route, a netip.Addr) bool {
	for _, r := range rs {
		if r.Dst == "default" || (r.Type != "" && r.Type != "unicast") {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Bits() > 0 && p.Contains(a) {
			return true
		}
	}
	return false
}

// WaitRoutes waits until every host and the router have a route to each
// address (learned by BGP, or the local workload route). Without BGP in
// `brindle node` there is nothing to wait for.
func WaitRoutes(ctx context.Context, st *State, addrs []netip.Addr, timeout time.Duration) error {
	if !st.BGP {
		return nil
	}
	nss := []string{st.Router.NS}
	for _, h := range st.Hosts {
		nss = append(nss, h.NS)
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, ns := range nss {
			rs, err := Routes(ctx, ns)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if !covered(rs, a) {
					missing = append(missing, ns+" → "+a.String())
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no route after %s: %s", timeout, strings.Join(missing, ", "))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitRouting waits, after Up, until every agent's BGP daemon runs and
// all its sessions are established. It is a no-op when the agents do not
// speak BGP.
func WaitRouting(ctx context.Context, st *State, timeout time.Duration) error {
	if !st.BGP {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for _, sock := range st.Sockets() {
		for {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := routing.FetchStatus(cctx, sock)
			cancel()
			var why string
			switch {
			case err != nil:
				why = err.Error()
			case s.State != "running":
				why = s.State + " " + s.Reason
			case len(st.Sockets()) > 1 && len(s.Peers) == 0:
				why = "no BGP peers yet"
			default:
				for _, p := range s.Peers {
					if p.State != "Established" {
						why = fmt.Sprintf("session with %s is %s", p.Address, p.State)
					}
				}
			}
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("BGP of %s not up after %s: %s", s.Node, timeout, why)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}
