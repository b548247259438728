package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

var binary string // the redisrepl binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "redisrepl-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "redisrepl")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stateDirs holds each test's STATE_DIRECTORY (by its *testing.T).
var stateDirs sync.Map

// proc is a redisrepl process started by a test.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), out: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if os.Getenv("STATE_DIRECTORY") == "" {
		// Sync states of its own: a state is locked by the process holding
		// it, and tests run side by side.
		// One directory per test, so that a process started again finds
		// the state of the one before.
		dir, _ := stateDirs.LoadOrStore(t, t.TempDir())
		p.cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+dir.(string))
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("redisrepl output:\n%s", p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(15 * time.Second):
		t.Fatal("redisrepl did not stop within 15 s of SIGTERM")
		return -1
	}
}

func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestHelpExplainsBothForms(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"run", "-h"}} {
		code, out := run(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, want := range []string{"-config", "-raddr", "-haddr", "-nam", "-rc"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v does not mention %s:\n%s", args, want, out)
			}
		}
	}
}

func TestMissingCertFile(t *testing.T) {
	dir := t.TempDir()
	code, out := run(t, "-raddr", "127.0.0.1:1", "-haddr", "https://127.0.0.1:2/redis",
		"-cert", filepath.Join(dir, "nope.pem"), "-key", filepath.Join(dir, "nope.key"), "-CA", filepath.Join(dir, "ca.pem"), "-nam", "lab1")
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	if !strings.Contains(out, filepath.Join(dir, "nope.pem")) {
		t.Fatalf("the error does not name the missing file:\n%s", out)
	}
}

func TestOneLinkFormNeedsEveryFlag(t *testing.T) {
	code, out := run(t, "-raddr", ":6379", "-nam", "lab1")
	if code != 2 || !strings.Contains(out, "-haddr") || !strings.Contains(out, "-cert") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestBrokenConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.toml")
	os.WriteFile(path, []byte("[[link]]\nname = \"a\"\nnamespace = 3\n"), 0o644)
	code, out := run(t, "-config", path)
	if code != 2 || !strings.Contains(out, path+":3") || !strings.Contains(out, "namespace") {
		t.Fatalf("exit %d, want 2 and %s:3 namespace:\n%s", code, path, out)
	}
	code, out = run(t, "-config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != 2 || !strings.Contains(out, "missing.toml") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// The original command line replicates, and SIGTERM stops it with status 0.
func TestOriginalCommandLine(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	do(t, local, "SET", "lab1:before", "1") // written before the start: the initial sync copies it
	p := start(t, "-raddr", hub.LocalAddr, "-haddr", hub.URL, "-cert", hub.Cert, "-key", hub.Key, "-CA", hub.CA, "-nam", "lab1:")
	waitRemote(t, remote, "lab1:before", "1")
	do(t, local, "HSET", "lab1:h", "f", "a/b\x00c")
	do(t, local, "SET", "lab2:other", "x")
	waitFor(t, func() bool { v, _ := redis.String(remote.Do("HGET", "lab1:h", "f")); return v == "a/b\x00c" })
	if n, _ := redis.Int(remote.Do("EXISTS", "lab2:other")); n != 0 {
		t.Fatal("a key outside the namespace was replicated")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	if strings.Contains(p.out.String(), "a/b") {
		t.Fatal("a value appeared in the log")
	}
}

// A config file with two links runs both.
func TestConfigFileLinks(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	text := fmt.Sprintf(`[service]
log_level = "debug"

[defaults]
local  = %q
remote = %q
cert   = %q
key    = %q
ca     = %q

[[link]]
name = "a"
namespace = "a:"

[[link]]
name = "b"
namespace = "b:"
`, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA)
	os.WriteFile(path, []byte(text), 0o644)
	p := start(t, "-config", path)
	do(t, local, "SET", "a:1", "x")
	do(t, local, "SET", "b:1", "y")
	do(t, local, "SET", "c:1", "z")
	waitRemote(t, remote, "a:1", "x")
	waitRemote(t, remote, "b:1", "y")
	if n, _ := redis.Int(remote.Do("EXISTS", "c:1")); n != 0 {
		t.Fatal("c:1 belongs to no link but was replicated")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}

func conns(t *testing.T, hub *webdistest.Hub) (redis.Conn, redis.Conn) {
	t.Helper()
	return hub.Conns(t)
}

func do(t *testing.T, c redis.Conn, cmd string, args ...any) {
	t.Helper()
	if _, err := c.Do(cmd, args...); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}

func waitRemote(t *testing.T, remote redis.Conn, key, want string) {
	t.Helper()
	waitFor(t, func() bool { v, _ := redis.String(remote.Do("GET", key)); return v == want })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	webdistest.WaitFor(t, 10*time.Second, "the condition", cond)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
