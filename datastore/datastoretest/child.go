package datastoretest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/datastore"
)

// childEnv carries a member's configuration (JSON) to a re-executed test
// binary; its presence makes ServeIfChild run the member.
const childEnv = "BRINDLE_DATASTORETEST_CHILD"

// childConfig is what the parent sends: the fields of ServerConfig a
// member needs (the logger cannot travel).
type childConfig struct {
	DataDir, ClientURL, PeerURL string
	MaxTxnOps                   uint
	UnsafeNoFsync               bool
}

// ServeIfChild makes a test binary usable as Options.Separate's member
// process: call it first in TestMain. In a binary started by Separate it
// runs the member until its standard input closes (the parent exited or
// cleaned up) and then exits; otherwise it returns at once.
func ServeIfChild() {
	v := os.Getenv(childEnv)
	if v == "" {
		return
	}
	var cc childConfig
	if err := json.Unmarshal([]byte(v), &cc); err != nil {
		fmt.Fprintf(os.Stderr, "datastoretest child: %s: %v\n", childEnv, err)
		os.Exit(2)
	}
	s, err := datastore.StartServer(context.Background(), datastore.ServerConfig{
		Name: "test", DataDir: cc.DataDir, ClientURL: cc.ClientURL, PeerURL: cc.PeerURL,
		MaxTxnOps: cc.MaxTxnOps, UnsafeNoFsync: cc.UnsafeNoFsync,
		StartTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "datastoretest child: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Close()
	os.Exit(0)
}

// startChild runs the member in a child process (this test binary again,
// which must call ServeIfChild in TestMain) and returns once it serves.
// The child is stopped at cleanup.
func (m *Member) startChild(t testing.TB) error {
	cc, _ := json.Marshal(childConfig{DataDir: m.cfg.DataDir, ClientURL: m.cfg.ClientURL, PeerURL: m.cfg.PeerURL,
		MaxTxnOps: m.cfg.MaxTxnOps, UnsafeNoFsync: m.cfg.UnsafeNoFsync})
	self, err := os.Executable() // os.Args[0] may be relative to a directory the test left
	if err != nil {
		return fmt.Errorf("datastoretest: %w", err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(cc))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("datastoretest: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("datastoretest: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("datastoretest: starting the member process: %w", err)
	}
	// The child gives up after its own 30 s start timeout; this deadline
	// covers a child stuck before it gets there.
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		line = <-ready
	}
	if strings.TrimSpace(line) != "ready" {
		_ = stdin.Close()
		_ = cmd.Wait()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return errors.New("the member process exited before serving (does TestMain call datastoretest.ServeIfChild?)")
	}
	m.pid = cmd.Process.Pid
	t.Cleanup(func() {
		_ = stdin.Close() // the child stops its member and exits
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return nil
}

// Pid is the member process's id with Options.Separate, else 0 (the
// member runs in the test's process).
func (m *Member) Pid() int { return m.pid }
