package webdistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Part names a process of the hub's chain.
type Part string

const (
	PartNginx       Part = "nginx"
	PartWebdis      Part = "webdis"
	PartRemoteRedis Part = "remote redis"
)

// Front says what serves the hub's URL.
func (h *Hub) Front() Front { return h.opts.Front }

// DefaultFront is the front of a hub whose Options name none: nginx, or
// the gateway with WEBDISTEST_FRONT=gateway.
func DefaultFront() Front {
	if os.Getenv(FrontEnv) == "gateway" {
		return FrontGateway
	}
	return FrontNginx
}

// PartsOf are the processes of a hub's chain that Pause can stop: nginx,
// Webdis and the hub Redis; with the gateway front only the hub Redis (a
// gateway in the test process cannot be stopped alone).
func PartsOf(f Front) []Part {
	if f == FrontGateway {
		return []Part{PartRemoteRedis}
	}
	return []Part{PartNginx, PartWebdis, PartRemoteRedis}
}

// Pause stops part with SIGSTOP, as a hung process looks: its sockets stay
// open and nothing answers. resume sends SIGCONT; the test's end resumes it
// too, so that Close can stop it.
func (h *Hub) Pause(part Part) (resume func() error, err error) {
	h.mu.Lock()
	p := map[Part]*Process{PartNginx: h.nginx, PartWebdis: h.webdis, PartRemoteRedis: h.remote}[part]
	h.mu.Unlock()
	if h.opts.Front == FrontGateway && part != PartRemoteRedis {
		return nil, fmt.Errorf("webdistest: the gateway front has no %s to pause", part)
	}
	if p == nil || !p.Running() {
		return nil, fmt.Errorf("webdistest: %s is not running", part)
	}
	pid := p.Pid()
	pids := append([]int{pid}, children(pid)...) // nginx's workers too
	for _, q := range pids {
		if err := syscall.Kill(q, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("webdistest: SIGSTOP %s (pid %d): %w", part, q, err)
		}
	}
	h.logf("webdistest: paused %s (pids %v)", part, pids)
	return func() error {
		h.logf("webdistest: resumed %s (pids %v)", part, pids)
		var first error
		for _, q := range pids {
			if err := syscall.Kill(q, syscall.SIGCONT); err != nil && first == nil {
				first = err
			}
		}
		return first
	}, nil
}

// children are the pids whose parent is pid, from /proc.
func children(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		if c, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			out = append(out, c)
		}
	}
	return out
}
