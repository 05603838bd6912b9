package lab

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestExited: a running process has not exited; killed but not reaped
// (a zombie) it has; reaped, its PID is gone and it has.
func TestExited(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if exited(pid) {
		t.Fatal("a running process counts as exited")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !exited(pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped process does not count as exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !exited(pid) {
		t.Error("a reaped process does not count as exited")
	}
}
