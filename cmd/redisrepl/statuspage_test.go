package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// headlessDOM opens url in headless Chromium, lets its scripts run for
// budget of virtual time, and returns the DOM then; it also saves a
// screenshot to png.
func headlessDOM(t *testing.T, url string, budget time.Duration, png string) string {
	t.Helper()
	chromium := webdistest.RequireProgram(t, "chromium", "chromium")
	args := func(extra ...string) []string {
		return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=" + strconv.Itoa(int(budget.Milliseconds()))}, extra...)
	}
	run := func(a []string) []byte {
		cmd := exec.Command(chromium, a...)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.Output(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("chromium %v: no answer in 60 s\n%s", a, stderr.String())
		}
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", a, err, stderr.String())
		}
		return out
	}
	dom := string(run(args("--dump-dom", url)))
	run(args("--screenshot="+png, "--window-size=1280,420", "--hide-scrollbars", url))
	if fi, err := os.Stat(png); err != nil || fi.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", png, err)
	}
	return dom
}

// row is the <tr> of link (or tenant) name in dom, with its data-state.
func row(t *testing.T, dom, attr, name string) (state, html string) {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr ` + attr + `="` + regexp.QuoteMeta(name) + `" data-state="([a-z]+)">(.*?)</tr>`)
	m := re.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no row for %q in the page's DOM:\n%s", name, dom)
	}
	return m[1], m[2]
}

// cell is the text of the <td class="class..."> of a row.
func cell(t *testing.T, row, class string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<td class="` + class + `[^"]*">(.*?)</td>`).FindStringSubmatch(row)
	if m == nil {
		t.Fatalf("no %s cell in row %s", class, row)
	}
	return m[1]
}

// The status page, opened in a browser, shows a healthy link as live with
// its lag history and keys/s, and a link whose hub does not answer as not
// live, with its error and its remote side marked.
func TestStatusPageShowsHealthyAndFailingLinks(t *testing.T) {
	webdistest.RequireProgram(t, "chromium", "chromium")
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	dir := t.TempDir()
	path := filepath.Join(dir, "redisrepl.toml")
	addr := freeAddr(t)
	deadHub := "https://" + freeAddr(t) + "/redis" // nothing listens there
	writeFile(t, path, fmt.Sprintf(`[service]
metrics_addr = %q

[defaults]
local = %q
cert = %q
key = %q
ca = %q

[[link]]
name = "good"
namespace = "good:"
remote = %q

[[link]]
name = "bad"
namespace = "bad:"
remote = %q
`, addr, hub.LocalAddr, hub.Cert, hub.Key, hub.CA, hub.URL, deadHub), false)
	p := start(t, "-config", path)
	waitStatusWithin(t, addr, 20*time.Second, "link good live and link bad failing", func(s statusDocT) bool {
		g, _ := s.link("good")
		b, _ := s.link("bad")
		return g.State == "live" && b.State != "" && b.State != "live"
	})

	// Keys written over two sampling intervals give the good link a point
	// with a lag and a rate.
	history := func() map[string][]historyPoint {
		_, body := get(t, "http://"+addr+"/status/history")
		var h map[string][]historyPoint
		json.Unmarshal([]byte(body), &h)
		return h
	}
	n := 0
	webdistest.WaitFor(t, 4*historyEvery, "two history points of link good, one with keys copied", func() bool {
		for range 20 {
			do(t, local, "SET", fmt.Sprintf("good:%d", n), "v")
			n++
		}
		time.Sleep(100 * time.Millisecond)
		pts := history()["good"]
		for _, pt := range pts {
			if pt.LagP99Ms != nil && pt.KeysPerSec > 0 {
				return len(pts) >= 2
			}
		}
		return false
	})
	waitRemote(t, remote, fmt.Sprintf("good:%d", n-1), "v")

	png := filepath.Join(t.TempDir(), "statuspage.png")
	dom := headlessDOM(t, "http://"+addr+"/", 3*time.Second, png)
	t.Logf("screenshot: %s", png)
	if out := os.Getenv("STATUSPAGE_PNG"); out != "" {
		if b, err := os.ReadFile(png); err == nil {
			os.WriteFile(out, b, 0o644)
		}
	}
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("the page's script did not render /status:\n%s", dom)
	}
	if !strings.Contains(dom, "2 links: 1 live, 1 not live") {
		t.Errorf("summary missing or wrong:\n%s", dom)
	}

	state, good := row(t, dom, "data-link", "good")
	if state != "live" || cell(t, good, "direction") != "push" || cell(t, good, "err") != "" {
		t.Errorf("link good: state %q, row %s", state, good)
	}
	if lag := cell(t, good, "lag"); !strings.HasSuffix(lag, " ms") && !strings.HasSuffix(lag, " s") {
		t.Errorf("link good: lag cell %q, want a duration", lag)
	}
	if k, err := strconv.ParseFloat(cell(t, good, "keys"), 64); err != nil || k < 0 {
		t.Errorf("link good: keys/s cell %q", cell(t, good, "keys"))
	}
	if m := regexp.MustCompile(`<svg class="spark"[^>]* data-points="(\d+)"`).FindStringSubmatch(good); m == nil || m[1] == "0" || m[1] == "1" {
		t.Errorf("link good: no sparkline points: %s", good)
	}
	if !strings.Contains(good, "<circle") {
		t.Errorf("link good: its sparkline draws no lag: %s", good)
	}
	if strings.Contains(good, `data-ok="false"`) {
		t.Errorf("link good: a side is marked bad: %s", good)
	}

	state, bad := row(t, dom, "data-link", "bad")
	if state == "live" || cell(t, bad, "err") == "" {
		t.Errorf("link bad: state %q, row %s", state, bad)
	}
	if strings.Contains(bad, "<circle") {
		t.Errorf("link bad copied nothing, yet its sparkline draws a lag: %s", bad)
	}
	if !strings.Contains(bad, `data-side="remote" data-ok="false"`) {
		t.Errorf("link bad: its remote side is not marked: %s", bad)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// The gateway's status page shows each tenant with what it sent and what
// was refused, and the hub marked down while its Redis does not answer;
// /metrics says the same (hub_up, and the server certificate's expiry).
func TestGatewayStatusPageShowsTenantsAndHubDown(t *testing.T) {
	webdistest.RequireProgram(t, "chromium", "chromium")
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"t:"}, Log: t.Logf})
	srv := httptest.NewServer(hub.Gateway.MetricsHandler())
	defer srv.Close()
	tc, err := webdistest.TLSConfig(hub.CA, hub.Cert, hub.Key)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	send := func(path string) int {
		resp, err := client.Get(hub.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const sets, refused = 7, 3
	for i := range sets {
		if code := send(fmt.Sprintf("/SET/t:%d/v", i)); code != 200 {
			t.Fatalf("SET: %d", code)
		}
	}
	for range refused {
		if code := send("/CONFIG/GET/maxmemory"); code == 200 {
			t.Fatalf("CONFIG GET was not refused")
		}
	}
	metric := func(name string) string {
		_, body := get(t, srv.URL+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name) {
				return line
			}
		}
		return ""
	}
	if m := metric("redisrepl_gateway_hub_up "); m != "redisrepl_gateway_hub_up 1" {
		t.Fatalf("hub up: %q", m)
	}
	want := readCert(t, hub.Certs.ServerCert).NotAfter.Unix()
	m := metric(fmt.Sprintf(`redisrepl_gateway_certificate_expiry_timestamp_seconds{file=%q,role="cert"} `, hub.Certs.ServerCert))
	if v, err := strconv.ParseFloat(m[strings.LastIndexByte(m, ' ')+1:], 64); err != nil || int64(v) != want {
		t.Errorf("server certificate expiry: %q, want %d (its NotAfter)", m, want)
	}

	// A hub Redis that is gone (a hung one is noticed only after the
	// gateway's command timeout).
	if err := hub.StopRemoteRedis(); err != nil {
		t.Fatal(err)
	}
	webdistest.WaitFor(t, 15*time.Second, "the gateway to see the hub down", func() bool {
		return metric("redisrepl_gateway_hub_up ") == "redisrepl_gateway_hub_up 0"
	})

	png := filepath.Join(t.TempDir(), "gateway-status.png")
	dom := headlessDOM(t, srv.URL+"/", time.Second, png)
	t.Logf("screenshot: %s", png)
	if out := os.Getenv("GATEWAY_STATUSPAGE_PNG"); out != "" {
		if b, err := os.ReadFile(png); err == nil {
			os.WriteFile(out, b, 0o644)
		}
	}
	if !strings.Contains(dom, `data-up="false"`) || !strings.Contains(dom, "NOT answering") {
		t.Errorf("the hub is not marked down:\n%s", dom)
	}
	names := hub.Gateway.Tenants()
	if len(names) != 1 {
		t.Fatalf("tenants %v", names)
	}
	_, r := row(t, dom, "data-tenant", names[0])
	// The harness's own probe through the gateway counts as a request too.
	if got, err := strconv.Atoi(cell(t, r, "requests")); err != nil || got < sets+refused {
		t.Errorf("requests cell %q, want >= %d", cell(t, r, "requests"), sets+refused)
	}
	if got := cell(t, r, "errors"); got != strconv.Itoa(refused) {
		t.Errorf("errors cell %q, want %d", got, refused)
	}
	if got := cell(t, r, "refusals"); got != fmt.Sprintf("command not allowed: %d", refused) {
		t.Errorf("refusals cell %q", got)
	}
	if got := cell(t, r, "namespaces"); got != "t:" {
		t.Errorf("namespaces cell %q", got)
	}
}
