package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// configFile writes the configuration of links (name, namespace pairs) on
// hub, with metrics_addr, to path: directly, or with rename as editors save.
func configFile(t *testing.T, path string, hub *webdistest.Hub, metricsAddr string, rename bool, links ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[service]\nmetrics_addr = %q\nlog_level = \"debug\"\n\n[defaults]\nlocal = %q\nremote = %q\ncert = %q\nkey = %q\nca = %q\n",
		metricsAddr, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA)
	for i := 0; i+1 < len(links); i += 2 {
		fmt.Fprintf(&b, "\n[[link]]\nname = %q\nnamespace = %q\n", links[i], links[i+1])
	}
	writeFile(t, path, b.String(), rename)
}

func writeFile(t *testing.T, path, text string, rename bool) {
	t.Helper()
	if !rename {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp := filepath.Join(filepath.Dir(path), ".edit-"+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// statusDocT is what the tests read of /status.
type statusDocT struct {
	ConfigFile      string `json:"config_file"`
	Generation      int    `json:"generation"`
	ReloadErrors    int    `json:"reload_errors"`
	Healthy         bool   `json:"healthy"`
	LastReloadError *struct {
		Error    string `json:"error"`
		Problems []struct {
			File    string `json:"file"`
			Line    int    `json:"line"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"problems"`
	} `json:"last_reload_error"`
	Links []linkT `json:"links"`
}

type linkT struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	Starts       int    `json:"starts"`
	EventsLocal  int64  `json:"events_local"`
	KeysToRemote int64  `json:"keys_to_remote"`
	FileProblem  string `json:"file_problem"`
	LocalReset   *struct {
		KeptKeys int `json:"kept_keys"`
	} `json:"local_reset"`
	Config struct {
		Namespace string `json:"namespace"`
		Local     string `json:"local"`
	} `json:"config"`
}

func (s statusDocT) link(name string) (linkT, bool) {
	for _, l := range s.Links {
		if l.Name == name {
			return l, true
		}
	}
	return linkT{}, false
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getStatus(t *testing.T, addr string) statusDocT {
	t.Helper()
	code, body := get(t, "http://"+addr+"/status")
	if code != 200 {
		t.Fatalf("/status: %d %s", code, body)
	}
	var s statusDocT
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return s
}

// waitStatus waits until cond holds of /status, and returns that status.
func waitStatus(t *testing.T, addr, what string, cond func(statusDocT) bool) statusDocT {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, body := get(t, "http://"+addr+"/status"); code == 200 {
			var s statusDocT
			if json.Unmarshal([]byte(body), &s) == nil && cond(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; /status:\n%s", what, body)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; /status: %d %s", what, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitHealthz(t *testing.T, addr string, want int) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get(t, "http://"+addr+"/healthz")
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q, want %d", code, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func absent(t *testing.T, c redis.Conn, key string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if n, _ := redis.Int(c.Do("EXISTS", key)); n != 0 {
		t.Fatalf("%s was replicated", key)
	}
}

// Hot reload, step by step: add a link, change one, remove one, an invalid
// edit and its fix, SIGHUP after a certificate renewal.
func TestHotReload(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	dir := t.TempDir()
	path := filepath.Join(dir, "redisrepl.toml")
	addr := freeAddr(t)
	configFile(t, path, hub, addr, false, "a", "a:")
	p := start(t, "-config", path)

	waitHealthz(t, addr, 200)
	do(t, local, "SET", "a:1", "x")
	waitRemote(t, remote, "a:1", "x")
	st := waitStatus(t, addr, "link a counted a:1", func(s statusDocT) bool { l, _ := s.link("a"); return l.KeysToRemote >= 1 })
	if st.Generation != 1 || st.ConfigFile != path || len(st.Links) != 1 {
		t.Fatalf("status after start: %+v", st)
	}

	// Add link b by editing the file in place.
	configFile(t, path, hub, addr, false, "a", "a:", "b", "b:")
	waitStatus(t, addr, "link b", func(s statusDocT) bool { _, ok := s.link("b"); return ok && s.Generation == 2 })
	do(t, local, "SET", "b:1", "y")
	waitRemote(t, remote, "b:1", "y")
	before := waitStatus(t, addr, "both live", func(s statusDocT) bool {
		a, _ := s.link("a")
		b, _ := s.link("b")
		return a.State == "live" && b.State == "live"
	})
	a0, _ := before.link("a")

	// Change b's namespace, saving by rename: only b restarts.
	configFile(t, path, hub, addr, true, "a", "a:", "b", "b2:")
	st = waitStatus(t, addr, "b restarted", func(s statusDocT) bool { b, _ := s.link("b"); return b.Starts == 2 && s.Generation == 3 })
	if a, _ := st.link("a"); a.Starts != 1 || a.KeysToRemote < a0.KeysToRemote {
		t.Fatalf("link a was restarted by a change of b: before %+v, after %+v", a0, a)
	}
	do(t, local, "SET", "b2:1", "z")
	waitRemote(t, remote, "b2:1", "z")
	do(t, local, "SET", "b:2", "old namespace")
	absent(t, remote, "b:2", 500*time.Millisecond)

	// Remove b: it stops.
	configFile(t, path, hub, addr, false, "a", "a:")
	st = waitStatus(t, addr, "b removed", func(s statusDocT) bool { return len(s.Links) == 1 && s.Generation == 4 })
	if a, _ := st.link("a"); a.Starts != 1 {
		t.Fatalf("link a restarted: %+v", a)
	}
	do(t, local, "SET", "b2:2", "after removal")
	absent(t, remote, "b2:2", time.Second)

	// An invalid edit: the old links keep going, /status and /healthz say why.
	good, _ := os.ReadFile(path)
	bad := strings.Replace(string(good), `namespace = "a:"`, `namespace = 3`, 1)
	badLine := 1 + strings.Count(bad[:strings.Index(bad, "namespace = 3")], "\n")
	writeFile(t, path, bad, true)
	st = waitStatus(t, addr, "reload error", func(s statusDocT) bool { return s.LastReloadError != nil })
	pr := st.LastReloadError.Problems
	if st.Generation != 4 || st.ReloadErrors != 1 || st.Healthy || len(pr) != 1 ||
		pr[0].Line != badLine || pr[0].File != path || !strings.Contains(pr[0].Field, "namespace") ||
		!strings.Contains(st.LastReloadError.Error, fmt.Sprintf("%s:%d", path, badLine)) {
		t.Fatalf("status after an invalid edit (error expected at line %d): %+v", badLine, st)
	}
	if body := waitHealthz(t, addr, 503); !strings.Contains(body, fmt.Sprintf("%s:%d", path, badLine)) {
		t.Fatalf("/healthz does not give the error: %q", body)
	}
	do(t, local, "SET", "a:2", "still replicating")
	waitRemote(t, remote, "a:2", "still replicating")

	// Fixed: healthy again, a new generation, a not restarted.
	writeFile(t, path, string(good), false)
	st = waitStatus(t, addr, "fixed", func(s statusDocT) bool { return s.LastReloadError == nil && s.Generation == 5 })
	if a, _ := st.link("a"); a.Starts != 1 {
		t.Fatalf("link a restarted: %+v", a)
	}
	waitHealthz(t, addr, 200)

	// A certificate renewed in place (same path, new bytes): SIGHUP
	// restarts the link that uses it, without an edit of the file.
	cert := filepath.Join(dir, "client.pem")
	pem, err := os.ReadFile(hub.Cert)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cert, string(pem), false)
	writeFile(t, path, strings.Replace(string(good), fmt.Sprintf("cert = %q", hub.Cert), fmt.Sprintf("cert = %q", cert), 1), false)
	st = waitStatus(t, addr, "cert moved", func(s statusDocT) bool { a, _ := s.link("a"); return s.Generation == 6 && a.Starts == 2 })
	writeFile(t, cert, string(pem)+"\n", false) // same certificate, other bytes
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, addr, "SIGHUP reload", func(s statusDocT) bool {
		a, _ := s.link("a")
		return s.Generation == 7 && a.Starts == 3 && a.State == "live"
	})
	do(t, local, "SET", "a:3", "after renewal")
	waitRemote(t, remote, "a:3", "after renewal")
	waitHealthz(t, addr, 200)

	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != 0 {
		t.Fatalf("the HTTP server outlived the service: %d", code)
	}
}

// A metrics_addr that cannot be bound is reported, and the links replicate
// anyway.
func TestMetricsAddrInUse(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	configFile(t, path, hub, busy.Addr().String(), false, "a", "a:")
	p := start(t, "-config", path)
	do(t, local, "SET", "a:1", "x")
	waitRemote(t, remote, "a:1", "x")
	if out := p.out.String(); !strings.Contains(out, "cannot serve /metrics") || !strings.Contains(out, busy.Addr().String()) {
		t.Fatalf("the bind error is not reported:\n%s", out)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}
