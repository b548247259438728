package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The one-link form takes the local Redis's TLS files as -lCA, -lcert and
// -lkey, validated as local_ca, local_cert and local_key in a file are.
func TestOneLinkLocalTLSFlags(t *testing.T) {
	dir := t.TempDir()
	certs, err := webdistest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*oneLinkFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := addOneLinkFlags(fs)
		base := []string{"-raddr", "rediss://127.0.0.1:6380/2", "-haddr", "https://hub/redis",
			"-cert", certs.ClientCert, "-key", certs.ClientKey, "-CA", certs.CA, "-nam", "lab:"}
		return f, fs.Parse(append(base, args...))
	}
	f, err := parse("-lCA", certs.CA, "-lcert", certs.ClientCert, "-lkey", certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(filepath.Join(dir, "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Links[0]
	if !l.LocalTLS || l.LocalCA != certs.CA || l.LocalCert != certs.ClientCert || l.LocalKey != certs.ClientKey || l.LocalDB != 2 {
		t.Fatalf("link %+v", l)
	}
	// -lcert without -lkey, and -lCA with a plain redis:// address.
	f, _ = parse("-lcert", certs.ClientCert)
	if _, err := f.config("", false); err == nil || !strings.Contains(err.Error(), "local_cert: needs local_key") {
		t.Errorf("-lcert alone: %v", err)
	}
	f, _ = parse("-lCA", certs.CA, "-raddr", "127.0.0.1:6380")
	if _, err := f.config("", false); err == nil || !strings.Contains(err.Error(), "not a rediss:// URL") {
		t.Errorf("-lCA without rediss://: %v", err)
	}
}

// Two processes of the one-link form with the same -nam on one machine
// (same state directory), each against a stack of its own, keep sync
// states of their own: each replicates in direction both without finding
// the other's state. A third process on the same servers as the first is
// refused at start, with an error naming the state file and the first's
// pid.
func TestOneLinkSameNamespaceTwoStacks(t *testing.T) {
	hubs := []*webdistest.Hub{webdistest.New(t, webdistest.Options{Log: t.Logf}), webdistest.New(t, webdistest.Options{Log: t.Logf})}
	args := func(h *webdistest.Hub) []string {
		return []string{"-rc", "-raddr", h.LocalAddr, "-haddr", h.URL, "-cert", h.Cert, "-key", h.Key, "-CA", h.CA, "-nam", "lab1:"}
	}
	var procs []*proc
	for i, h := range hubs {
		procs = append(procs, start(t, args(h)...))
		local, remote := conns(t, h)
		do(t, local, "SET", "lab1:from-local", fmt.Sprint("local of stack ", i))
		do(t, remote, "SET", "lab1:from-hub", fmt.Sprint("hub of stack ", i))
	}
	for i, h := range hubs {
		local, remote := conns(t, h)
		waitRemote(t, remote, "lab1:from-local", fmt.Sprint("local of stack ", i))
		waitRemote(t, local, "lab1:from-hub", fmt.Sprint("hub of stack ", i))
	}
	// Both save their states (every 10 s, and at the end); a process that
	// found the other's state would say so.
	time.Sleep(11 * time.Second)

	code, out := runIn(t, args(hubs[0])...)
	state := ""
	if i := strings.Index(out, "the sync state "); i >= 0 {
		state = strings.Fields(out[i+len("the sync state "):])[0]
	}
	if code == 0 || state == "" || !strings.Contains(out, fmt.Sprintf("pid %d", procs[0].cmd.Process.Pid)) {
		t.Fatalf("a third process on the first's servers: exit status %d, want a refusal naming the state file and pid %d:\n%s",
			code, procs[0].cmd.Process.Pid, out)
	}
	if !strings.HasPrefix(filepath.Base(state), "lab1_-") || !strings.HasSuffix(state, ".state") {
		t.Errorf("state file %q: want lab1_-<digest of the servers>.state", state)
	}
	for i, p := range procs {
		if code := p.stop(t); code != 0 {
			t.Errorf("process %d: exit status %d", i, code)
		}
		if o := p.out.String(); strings.Contains(o, "belongs to other Redis servers") || strings.Contains(o, "in use by") {
			t.Errorf("process %d found another's sync state:\n%s", i, o)
		}
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(state), "lab1_-*.state"))
	if len(files) != 2 {
		t.Errorf("state files %v, want one per process", files)
	}
	// -state names the file.
	mine := filepath.Join(t.TempDir(), "mine.state")
	p := start(t, append(args(hubs[1]), "-state", mine)...)
	local, remote := conns(t, hubs[1])
	do(t, remote, "SET", "lab1:later", "1")
	waitRemote(t, local, "lab1:later", "1")
	p.stop(t)
	if _, err := os.Stat(mine + ".lock"); err != nil {
		t.Errorf("-state %s: %v", mine, err)
	}
}

// runIn is run with the test's state directory (see start), for at most
// 20 s: a process still running then is stopped (exit status 0).
func runIn(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	dir, _ := stateDirs.LoadOrStore(t, t.TempDir())
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+dir.(string))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}
