package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// birdConfig is the top-of-rack router's BIRD 2 configuration: an eBGP
// session (AS 64513) with every host (AS 65000+N, the node-to-node mesh
// off), learning their blocks into the kernel so the router forwards to
// them, and passing each host's blocks on to the other hosts.
func birdConfig(st *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# BIRD 2 top-of-rack router of lab %s (written by brindle lab)\n", st.Name)
	fmt.Fprintf(&b, "router id %s;\n", st.Router.Addr.Addr())
	b.WriteString("protocol device { scan time 10; }\n")
	b.WriteString("protocol kernel { ipv4 { import none; export all; }; }\n")
	fmt.Fprintf(&b, "template bgp hosts {\n  local as %d;\n  graceful restart on;\n  ipv4 { import all; export all; };\n}\n", torAS)
	for _, h := range st.Hosts {
		fmt.Fprintf(&b, "protocol bgp %s from hosts { neighbor %s as %d; }\n", h.Name, h.Addr.Addr(), hostAS(h))
	}
	return b.String()
}

// bird starts BIRD 2 in the router namespace.
func (b *builder) bird(ctx context.Context) error {
	st := b.st
	rdir := filepath.Join(st.Dir, "router")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(rdir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(st)), 0o644); err != nil {
		return err
	}
	sock := filepath.Join(rdir, "bird.ctl")
	logPath := filepath.Join(rdir, "bird.log")
	pid, err := start(st.Router.NS, logPath, "bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(rdir, "bird.pid"))
	if err != nil {
		return err
	}
	st.Procs = append(st.Procs, Proc{Role: "bird", PID: pid, Log: logPath})
	st.Router.Socket = ""
	st.Router.Log = logPath
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		if exited(pid) {
			return fmt.Errorf("bird exited:\n%s", tail(logPath, 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("bird did not open its control socket %s", sock)
}

// BirdSocket is the router's BIRD control socket (for `birdc -s`), or ""
// without --tor.
func (st *State) BirdSocket() string {
	if !st.TOR {
		return ""
	}
	return filepath.Join(st.Dir, "router", "bird.ctl")
}
