package link_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// runShared runs a link built by hubs until the test ends (or the returned
// stop), without waiting for it to be live.
func runShared(t testing.TB, hubs *link.Hubs, cfg config.Link) (*link.Link, func()) {
	t.Helper()
	l, err := hubs.New(ownState(t, cfg), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := runBuilt(t, l)
	t.Cleanup(stop)
	return l, stop
}

// sharedLinks runs n links of hubs on hub, namespaces "<prefix><i>:", in
// direction dir, and waits until all are live.
func sharedLinks(t testing.TB, hubs *link.Hubs, hub *webdistest.Hub, prefix string, n int, dir config.Direction) ([]*link.Link, []func()) {
	t.Helper()
	var ls []*link.Link
	var stops []func()
	for i := range n {
		cfg := linkConfig(hub, fmt.Sprintf("%s%d:", prefix, i))
		cfg.Name, cfg.CanaryKey = fmt.Sprintf("%s%d", prefix, i), "" // the canary key follows the name
		cfg.Direction, cfg.StateFile = dir, filepath.Join(t.TempDir(), cfg.Name+".state")
		l, stop := runShared(t, hubs, cfg)
		ls, stops = append(ls, l), append(stops, stop)
	}
	waitAllLive(t, ls, 30*time.Second)
	return ls, stops
}

func waitAllLive(t testing.TB, ls []*link.Link, d time.Duration) {
	t.Helper()
	waitFor(t, d, "every link live", func() bool {
		for _, l := range ls {
			if l.State() != link.Live {
				return false
			}
		}
		return true
	})
}

// hubConns counts this process's TCP connections established to the hub's
// front (/proc/self/net/tcp{,6}: state 01, remote port the front's, inode
// one of this process's fds). A gateway front runs in this process: its
// own sockets have the front's port as their local port, not the remote.
func hubConns(t testing.TB, hub *webdistest.Hub) int { return len(hubConnList(t, hub)) }

// hubConnList is what hubConns counts, one "local -> remote inode" line per
// connection, for a failure to show.
func hubConnList(t testing.TB, hub *webdistest.Hub) []string {
	t.Helper()
	i := strings.LastIndexByte(hub.URL, ':')
	port, err := strconv.Atoi(strings.TrimSuffix(hub.URL[i+1:], "/redis"))
	if err != nil {
		t.Fatalf("port of %s: %v", hub.URL, err)
	}
	mine := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if s, err := os.Readlink(fd); err == nil && strings.HasPrefix(s, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(s, "socket:["), "]")] = true
		}
	}
	want := fmt.Sprintf(":%04X", port)
	var conns []string
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			x := strings.Fields(line)
			if len(x) >= 10 && x[3] == "01" && strings.HasSuffix(x[2], want) && mine[x[9]] {
				conns = append(conns, x[1]+" -> "+x[2]+" inode "+x[9])
			}
		}
	}
	return conns
}

// watchConns samples hubConnList every 2 ms until the returned function is
// called, which returns the most connections seen at once, listed.
func watchConns(t testing.TB, hub *webdistest.Hub) func() []string {
	var most []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if c := hubConnList(t, hub); len(c) > len(most) {
				most = c
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() []string { close(stop); <-done; return most }
}

// Twenty links on one hub share one client: all replicate a burst written
// to every namespace at once, through never more connections than the
// bound, and the client is closed when the last link stops.
func TestSharedHubManyLinks(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	hubs := link.NewHubs()
	ls, stops := sharedLinks(t, hubs, hub, "m", 20, config.Push)
	if n := hubs.Clients(); n != 1 {
		t.Fatalf("%d hub clients for 20 links on one hub, want 1", n)
	}
	most := watchConns(t, hub)
	for j := range 500 {
		for i := range ls {
			if err := local.Send("SET", fmt.Sprintf("m%d:k%d", i, j), strings.Repeat("v", 100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := local.Do(""); err != nil {
		t.Fatal(err)
	}
	for i := range ls {
		got := waitEqual(t, hub, fmt.Sprintf("m%d:", i), 30*time.Second)
		if len(got) != 500 {
			t.Fatalf("namespace m%d: %d keys on both sides, want 500", i, len(got))
		}
	}
	conns := most()
	peak := len(conns)
	t.Logf("20 links, 10,000 keys: at most %d connections to the hub (bound %d)", peak, link.HubConns)
	if peak > link.HubConns {
		t.Fatalf("%d connections to the hub, over the bound of %d (%d hub clients); at that moment:\n%s",
			peak, link.HubConns, hubs.Clients(), strings.Join(conns, "\n"))
	}
	if peak == 0 {
		t.Fatal("no connection to the hub seen: the count is broken")
	}
	for _, stop := range stops {
		stop()
	}
	if n := hubs.Clients(); n != 0 {
		t.Fatalf("%d hub clients open after every link stopped", n)
	}
	waitFor(t, 5*time.Second, "the hub's connections closed", func() bool { return hubConns(t, hub) == 0 })
}

// Links in direction both hold an event stream each: on a client of two
// connections, four streams must not starve the requests.
func TestSharedHubStreamsApart(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	hubs := link.NewHubs()
	hubs.MaxConns = 2
	ls, _ := sharedLinks(t, hubs, hub, "s", 4, config.Both)
	for i := range ls {
		for j := range 50 {
			do(t, local, "SET", fmt.Sprintf("s%d:l%d", i, j), j)
			do(t, remote, "SET", fmt.Sprintf("s%d:r%d", i, j), j)
		}
	}
	for i := range ls {
		got := waitEqual(t, hub, fmt.Sprintf("s%d:", i), 20*time.Second)
		if len(got) != 100 {
			t.Fatalf("namespace s%d: %d keys on both sides, want 100", i, len(got))
		}
	}
	// 2 connections of requests, one per stream, and the streams'
	// connections going away when a stream is replaced.
	if n := hubConns(t, hub); n > 2+len(ls)+2 {
		t.Fatalf("%d connections to the hub: over 2 for requests and one per stream", n)
	}
}

// A hub part paused (SIGSTOP) is noticed by every link of the hub through
// the one shared probe: each is degraded, and live and equal again after it
// resumes.
func TestSharedHubPauseNoticedByEveryLink(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	hubs := link.NewHubs()
	ls, _ := sharedLinks(t, hubs, hub, "p", 5, config.Push)
	part := webdistest.PartsOf(webdistest.DefaultFront())[0]
	resume, err := hub.Pause(part)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resume() })
	paused := time.Now()
	for i := range ls {
		do(t, local, "SET", fmt.Sprintf("p%d:during", i), i)
	}
	waitFor(t, 10*time.Second, "every link sees the hub down", func() bool {
		for _, l := range ls {
			if l.State() != link.Degraded || remoteAnswering(l) {
				return false
			}
		}
		return true
	})
	t.Logf("%s paused: every link degraded after %v", part, time.Since(paused).Round(time.Millisecond))
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	waitAllLive(t, ls, 30*time.Second)
	for i := range ls {
		waitEqual(t, hub, fmt.Sprintf("p%d:", i), 20*time.Second)
	}
}

// The hub Redis restarted empty: every link notices (keys with a TTL only,
// so that the flush probe, which samples keys without one, cannot: the
// shared run_id watch must) and refills the hub.
func TestSharedHubRestartRefilledByEveryLink(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	hubs := link.NewHubs()
	ls, _ := sharedLinks(t, hubs, hub, "r", 4, config.Push)
	for i := range ls {
		for j := range 20 {
			do(t, local, "SET", fmt.Sprintf("r%d:k%d", i, j), j, "EX", 3600)
		}
	}
	for i := range ls {
		waitEqual(t, hub, fmt.Sprintf("r%d:", i), 10*time.Second)
	}
	if err := hub.RestartRemoteRedis(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for i := range ls {
		got := waitEqual(t, hub, fmt.Sprintf("r%d:", i), 30*time.Second)
		if len(got) != 20 {
			t.Fatalf("namespace r%d: %d keys on both sides, want 20", i, len(got))
		}
	}
	t.Logf("hub restarted empty: every namespace refilled after %v", time.Since(restarted).Round(time.Millisecond))
	waitAllLive(t, ls, 20*time.Second)
}

// A hub flushed without a restart (FLUSHALL: no event, the same run_id)
// is found by the hub's one shared flush probe, and every link refills its
// namespace; a flushed local Redis is found the same way, and every push
// link keeps the hub's keys and reports a local reset (the default keep).
func TestSharedHubFlushFoundForEveryLink(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	hubs := link.NewHubs()
	ls, _ := sharedLinks(t, hubs, hub, "f", 4, config.Push)
	for i := range ls {
		for j := range 20 {
			do(t, local, "SET", fmt.Sprintf("f%d:k%d", i, j), j)
		}
	}
	for i := range ls {
		waitEqual(t, hub, fmt.Sprintf("f%d:", i), 10*time.Second)
	}
	do(t, remote, "FLUSHALL")
	flushed := time.Now()
	waitFor(t, 30*time.Second, "every namespace refilled", func() bool {
		n, _ := redis.Int(remote.Do("DBSIZE"))
		return n == 4*20
	})
	for i := range ls {
		if got := waitEqual(t, hub, fmt.Sprintf("f%d:", i), 10*time.Second); len(got) != 20 {
			t.Fatalf("namespace f%d: %d keys on both sides, want 20", i, len(got))
		}
	}
	t.Logf("hub flushed: every namespace refilled after %v", time.Since(flushed).Round(time.Millisecond))

	do(t, local, "FLUSHALL")
	flushed = time.Now()
	waitFor(t, 30*time.Second, "a local reset reported by every link", func() bool {
		for _, l := range ls {
			if l.Status().LocalReset == nil {
				return false
			}
		}
		return true
	})
	t.Logf("local Redis flushed: every link reports a local reset after %v", time.Since(flushed).Round(time.Millisecond))
	if n, _ := redis.Int(remote.Do("DBSIZE")); n != 4*20 {
		t.Fatalf("%d keys left on the hub after the local flush, want the 80 kept", n)
	}
}

// A link that stops gives its hub back without closing the client the
// others use; a link whose files differ gets a client of its own, and files
// of equal contents at other paths share.
func TestSharedHubStopAndOtherFiles(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, _ := conns(t, hub)
	hubs := link.NewHubs()
	ls, stops := sharedLinks(t, hubs, hub, "o", 3, config.Push)
	stops[0]()
	if n := hubs.Clients(); n != 1 {
		t.Fatalf("%d hub clients after one of three links stopped, want 1", n)
	}
	for i := range 100 {
		do(t, local, "SET", fmt.Sprintf("o1:k%d", i), i)
		do(t, local, "SET", fmt.Sprintf("o2:k%d", i), i)
	}
	for _, ns := range []string{"o1:", "o2:"} {
		if got := waitEqual(t, hub, ns, 10*time.Second); len(got) != 100 {
			t.Fatalf("namespace %s: %d keys on both sides, want 100", ns, len(got))
		}
	}
	if ls[1].State() != link.Live || ls[2].State() != link.Live {
		t.Fatalf("links after another stopped: %s, %s", ls[1].State(), ls[2].State())
	}

	// The same files copied elsewhere: the same hub.
	dir := t.TempDir()
	cfg := linkConfig(hub, "copy:")
	cfg.Name, cfg.Cert, cfg.Key, cfg.CA = "copy", copyFile(t, hub.Cert, dir), copyFile(t, hub.Key, dir), copyFile(t, hub.CA, dir)
	same, _ := runShared(t, hubs, cfg)
	if n := hubs.Clients(); n != 1 {
		t.Fatalf("%d hub clients for files of equal contents, want 1", n)
	}
	// The same key in another encoding (SEC 1): other files, as after a
	// renewal in place, so a client of its own.
	cfg = linkConfig(hub, "other:")
	cfg.Name, cfg.Key = "other", sec1Key(t, hub.Key, t.TempDir())
	other, _ := runShared(t, hubs, cfg)
	if n := hubs.Clients(); n != 2 {
		t.Fatalf("%d hub clients with a link on other files, want 2", n)
	}
	waitAllLive(t, []*link.Link{same, other}, 15*time.Second)
	for i := range 50 {
		do(t, local, "SET", fmt.Sprintf("copy:k%d", i), i)
		do(t, local, "SET", fmt.Sprintf("other:k%d", i), i)
	}
	for _, ns := range []string{"copy:", "other:", "o1:", "o2:"} {
		waitEqual(t, hub, ns, 10*time.Second)
	}
}

func copyFile(t testing.TB, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// sec1Key writes the EC key of file src (PKCS #8) as SEC 1 into dir.
func sec1Key(t testing.TB, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", src)
	}
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: a %T, not an EC key", src, key)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "client-sec1.key")
	if err := os.WriteFile(dst, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
