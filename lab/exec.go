package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ipCmd runs `ip args...` and returns its error with the command and its
// output.
func ipCmd(ctx context.Context, args ...string) error {
	return run(ctx, "ip", args...)
}

// inNS runs a command inside a named namespace.
func inNS(ctx context.Context, ns string, name string, args ...string) error {
	return run(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, nil, name, args...)
	return err
}

func output(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()+out.String()))
	}
	return out.String(), nil
}

// start runs a long-lived process in its own session (so a Ctrl-C at the
// terminal reaches only the lab command, which then stops it), with its
// output in logPath. ns, when set, runs it under `ip netns exec`, which
// execs the command, so the PID is the command's own.
func start(ns, logPath string, name string, args ...string) (int, error) {
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it when it exits while we are still running; after we exit,
	// init does.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// ours reports whether pid is alive and its command line mentions dir
// (every process a lab starts has its state directory in its arguments),
// so a recycled PID is never signalled.
func ours(pid int, dir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		// A zombie has exited already.
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
			return false
		}
	}
	return strings.Contains(string(b), dir)
}

// exited reports whether a process this run started has exited (gone, or
// a zombie not reaped yet). Start-up waits use it rather than ours: while
// `ip netns exec` execs the real command, /proc/<pid>/cmdline can briefly
// read empty, and a healthy process would look foreign.
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	// The state follows the parenthesised command name, which may hold
	// spaces.
	if i := strings.LastIndexByte(string(st), ')'); i >= 0 {
		f := strings.Fields(string(st[i+1:]))
		return len(f) > 0 && f[0] == "Z"
	}
	return false
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func stop(pid int, dir string, grace time.Duration) error {
	if !ours(pid, dir) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !ours(pid, dir) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	for i := 0; i < 40 && ours(pid, dir); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
