package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// waitStatusWithin is waitStatus with a deadline of d.
func waitStatusWithin(t *testing.T, addr string, d time.Duration, what string, cond func(statusDocT) bool) statusDocT {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, body := get(t, "http://"+addr+"/status")
		var s statusDocT
		if code == 200 && json.Unmarshal([]byte(body), &s) == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; /status: %d\n%s", d, what, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A renewal tool replaces link a's certificate non-atomically (the file is
// missing, then half-written, then whole). Link a keeps replicating on the
// certificate it loaded, the problem is reported (log, /status, /healthz)
// while it lasts, and the link restarts only when the file comes back with
// new contents. Link b, on other files, is never touched.
//
// First the file goes missing with nothing else happening: the periodic
// re-check (every 30 s) finds it. Then it goes missing again and SIGHUP
// arrives meanwhile: the reload is refused for that file, and retried once
// the file is whole.
func TestCertFileMissingKeepsLink(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	dir := t.TempDir()
	cert := filepath.Join(dir, "client.pem")
	pem, err := os.ReadFile(hub.Cert)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cert, string(pem), false)
	path := filepath.Join(dir, "redisrepl.toml")
	addr := freeAddr(t)
	writeFile(t, path, fmt.Sprintf(`[service]
metrics_addr = %q
log_level = "debug"

[defaults]
local = %q
remote = %q
cert = %q
key = %q
ca = %q

[[link]]
name = "a"
namespace = "a:"
cert = %q

[[link]]
name = "b"
namespace = "b:"
`, addr, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA, cert), false)
	p := start(t, "-config", path)
	waitHealthz(t, addr, 200)
	do(t, local, "SET", "a:0", "start")
	do(t, local, "SET", "b:0", "start")
	waitRemote(t, remote, "a:0", "start")
	waitRemote(t, remote, "b:0", "start")

	// links says link a's and b's start counts are want (b's always 1),
	// and a is live.
	links := func(s statusDocT, want int) bool {
		a, _ := s.link("a")
		b, _ := s.link("b")
		return a.Starts == want && a.State == "live" && b.Starts == 1 && b.State == "live"
	}
	// stillReplicating writes a key of each link and waits for it on the hub.
	n := 0
	stillReplicating := func(what string) {
		t.Helper()
		n++
		for _, ns := range []string{"a:", "b:"} {
			key, value := fmt.Sprintf("%s%d", ns, n), what
			do(t, local, "SET", key, value)
			waitRemote(t, remote, key, value)
		}
	}
	// reported waits until /status gives link a's file problem (with
	// the file's path and want), and checks /healthz says it too.
	reported := func(what, want string, d time.Duration) statusDocT {
		t.Helper()
		st := waitStatusWithin(t, addr, d, what, func(s statusDocT) bool {
			a, _ := s.link("a")
			return strings.Contains(a.FileProblem, cert) && strings.Contains(a.FileProblem, want)
		})
		if st.Healthy || !links(st, 1) {
			t.Fatalf("%s: link a stopped or /status healthy: %+v", what, st)
		}
		if b, _ := st.link("b"); b.FileProblem != "" {
			t.Fatalf("%s: link b has a file problem: %+v", what, b)
		}
		body := waitHealthz(t, addr, 503)
		if !strings.Contains(body, `link "a"`) || !strings.Contains(body, cert) || !strings.Contains(body, want) {
			t.Fatalf("%s: /healthz does not name link a's file: %q", what, body)
		}
		return st
	}

	// 1. Missing; the periodic re-check finds it.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	reported("the missing file reported by the periodic re-check", "cannot be read", recheckEvery+10*time.Second)
	t.Logf("missing file noticed after %v", time.Since(removed).Round(time.Millisecond))
	stillReplicating("while the certificate file is missing")
	warned := false
	for _, line := range strings.Split(p.out.String(), "\n") {
		warned = warned || strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"link":"a"`) &&
			strings.Contains(line, fmt.Sprintf(`"file":%q`, cert))
	}
	if !warned {
		t.Fatalf("no warning naming %s in the log:\n%s", cert, p.out.String())
	}

	// Back with the same bytes: nothing restarts, healthy again at once.
	writeFile(t, cert, string(pem), false)
	back := time.Now()
	st := waitStatusWithin(t, addr, 5*time.Second, "the problem cleared", func(s statusDocT) bool {
		a, _ := s.link("a")
		return a.FileProblem == "" && s.Healthy
	})
	t.Logf("file back, unchanged: healthy after %v", time.Since(back).Round(time.Millisecond))
	if !links(st, 1) || st.Generation != 1 {
		t.Fatalf("a link restarted for an unchanged certificate: %+v", st)
	}
	waitHealthz(t, addr, 200)
	stillReplicating("after the same file came back")

	// 2. Missing again, and SIGHUP meanwhile: the reload is refused for
	// that file and the running link is kept.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st = reported("the missing file reported after SIGHUP", "cannot be read", 10*time.Second)
	if st.LastReloadError == nil || !strings.Contains(st.LastReloadError.Error, cert) {
		t.Fatalf("the refused reload is not reported: %+v", st)
	}
	stillReplicating("after SIGHUP with the certificate file missing")

	// Half-written: present but not loadable. Still kept, reported.
	renewed := string(pem) + readFile(t, hub.CA) // as a full chain: other bytes, same certificate
	writeFile(t, cert, renewed[:len(renewed)/3], false)
	reported("the half-written file", "does not load", 10*time.Second)
	stillReplicating("with the certificate file half-written")

	// Whole, with new contents: link a restarts on it (and only link a),
	// the refused reload goes through, healthy again.
	writeFile(t, cert, renewed, false)
	back = time.Now()
	st = waitStatusWithin(t, addr, 10*time.Second, "link a restarted on the renewed file", func(s statusDocT) bool {
		a, _ := s.link("a")
		return links(s, 2) && a.FileProblem == "" && s.LastReloadError == nil && s.Healthy
	})
	t.Logf("renewed file whole: link a restarted, healthy after %v", time.Since(back).Round(time.Millisecond))
	if st.Generation != 2 {
		t.Fatalf("generation %d after the refused reload went through, want 2", st.Generation)
	}
	waitHealthz(t, addr, 200)
	stillReplicating("after the renewal")

	hub.WaitEqual(t, "a:", 10*time.Second, nil)
	hub.WaitEqual(t, "b:", 10*time.Second, nil)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
