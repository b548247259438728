package webdistest

import (
	"fmt"
	"syscall"
	"time"
)

// Kill sends SIGKILL to the process (by its pid) and waits until it is
// reaped: a crash, not a stop.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("webdistest: %s (pid %d) survived SIGKILL", p.Name, p.Pid())
	}
}

// Pause stops the process with SIGSTOP, as a hung or partitioned server
// looks: its sockets stay open and nothing answers. resume sends SIGCONT;
// call it before Stop.
func (p *Process) Pause() (resume func() error, err error) {
	if err := syscall.Kill(p.Pid(), syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("webdistest: SIGSTOP %s (pid %d): %w", p.Name, p.Pid(), err)
	}
	return func() error { return syscall.Kill(p.Pid(), syscall.SIGCONT) }, nil
}
