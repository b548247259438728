package gateway_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/gateway"
)

func sha1Of(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestScriptsOnlyTheLinksByDefault: the link's scan step runs by SHA1 and by
// source; another script is 403 for a tenant without eval, whatever its
// form; an eval tenant's read-only script runs under its user's ACL (a
// foreign key is still NOPERM) and its SHA1 form is EVALSHA_RO.
func TestScriptsOnlyTheLinksByDefault(t *testing.T) {
	e := newEnv(t, attackTenants)
	a1, a3 := e.client(t, "lab1"), e.client(t, "lab3")
	wantPrefix(t, a1, e.url, enc("SET", "lab1:k", "v"), "+OK")
	wantPrefix(t, a1, e.url, enc("EVAL", webdis.ScanScript, "0", "0", "lab1:*", "10"), "*2\r\n")
	wantPrefix(t, a1, e.url, enc("EVALSHA", sha1Of(webdis.ScanScript), "0", "0", "lab1:*", "10"), "*2\r\n")
	for _, args := range [][]string{
		{"EVAL", "return 1", "0"},
		{"EVAL_RO", "return 1", "0"},
		{"EVAL", "#!lua flags=no-writes\nreturn 1", "0"},
		{"EVALSHA", sha1Of("return 1"), "0"},
		{"EVALSHA_RO", sha1Of("return 1"), "0"},
	} {
		wantStatus(t, a1, e.url, enc(args...), 403, "")
	}
	wantPrefix(t, a3, e.url, enc("SET", "lab3:k", "v3"), "+OK")
	wantPrefix(t, a3, e.url, enc("EVAL", "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", "1", "lab3:k"), "$2\r\nv3")
	wantPrefix(t, a3, e.url, enc("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "lab1:k"), "-NOPERM")
	wantStatus(t, a3, e.url, enc("EVAL", "return redis.call('GET', KEYS[1])", "1", "lab3:k"), 403, "")
	wantStatus(t, a3, e.url, enc("EVALSHA", sha1Of("return 1"), "0"), 403, "")
	wantPrefix(t, a3, e.url, enc("EVALSHA_RO", sha1Of("return 2"), "0"), "-NOSCRIPT")
	// The hub lets the watchdog kill early.
	v, err := e.direct(t).Do("CONFIG", "GET", "busy-reply-threshold")
	if vs, _ := v.([]any); err != nil || len(vs) != 2 || string(vs[1].([]byte)) != "100" {
		t.Errorf("busy-reply-threshold: %q %v, want 100 (lab3's script_time)", v, err)
	}
}

// TestInfoHidesTheHostAndMemoryUsageOfOwnKeys: INFO keeps what a link reads,
// not the host's details; MEMORY USAGE answers for a tenant's own keys only.
func TestInfoHidesTheHostAndMemoryUsageOfOwnKeys(t *testing.T) {
	e := newEnv(t, tenantsAB)
	a := e.client(t, "labA")
	st, body := post(t, a, e.url, enc("INFO", "server"))
	if st != 200 || !strings.Contains(body, "run_id:") || !strings.Contains(body, "redis_version:") {
		t.Errorf("INFO: %d %q", st, body)
	}
	for _, leak := range []string{"os:", "process_id:", "executable:", "tcp_port:", "config_file:"} {
		if strings.Contains(body, leak) {
			t.Errorf("INFO tells the tenant %s", leak)
		}
	}
	wantPrefix(t, a, e.url, enc("SET", "labA:k", "v"), "+OK")
	wantPrefix(t, a, e.url, enc("MEMORY", "USAGE", "labA:k"), ":")
	wantPrefix(t, a, e.url, enc("MEMORY", "USAGE", "labB:k"), "-NOPERM")
	wantStatus(t, a, e.url, enc("MEMORY", "STATS"), 403, "")
}

// TestRateLimitAnswers429WithRetryAfter: past commands_per_second a tenant
// gets 429 and Retry-After; another tenant is not counted with it.
func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	e := newEnv(t, tenantsAB+"commands_per_second = 20\n")
	b, a := e.client(t, "labB"), e.client(t, "labA")
	throttled := 0
	for range 60 {
		resp, err := b.Post(e.url+"/", "text/plain", strings.NewReader(enc("PING")))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			throttled++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if throttled < 30 {
		t.Errorf("labB throttled %d of 60 requests at 20/s", throttled)
	}
	for range 40 {
		if st, _, _ := tryPost(a, e.url, enc("PING")); st != 200 {
			t.Fatalf("labA, not limited: %d", st)
		}
	}
	if m := e.metrics(t); !strings.Contains(m, `redisrepl_gateway_refusals_total{reason="throttled",tenant="labB"}`) {
		t.Error("/metrics lacks labB's throttled count")
	}
}

// TestLimitsLetTheLinksRequestsThrough: at the default limits, the sizes a
// link sends pass: a 20 MB value built in chunks by APPEND and SETRANGE,
// a chunk of a million-member set.
func TestLimitsLetTheLinksRequestsThrough(t *testing.T) {
	e := newEnvWith(t, "max_body_bytes = 67108864", tenantsAB)
	a := e.client(t, "labA")
	chunk := strings.Repeat("x", 4<<20)
	for i := range 5 {
		wantPrefix(t, a, e.url, enc("APPEND", "labA:big", chunk), fmt.Sprintf(":%d", (i+1)*len(chunk)))
	}
	wantPrefix(t, a, e.url, enc("SETRANGE", "labA:big", fmt.Sprint(20<<20), "y"), ":")
	st, body := post(t, a, e.url, enc("STRLEN", "labA:big"))
	if st != 200 || body != fmt.Sprintf(":%d\r\n", 20<<20+1) {
		t.Errorf("STRLEN: %d %q", st, body)
	}
	args := []string{"SADD", "labA:set"}
	for i := range 100000 {
		args = append(args, fmt.Sprint(i))
	}
	wantPrefix(t, a, e.url, enc(args...), ":100000")
	resp, err := a.Post(e.url+"/", "text/plain", strings.NewReader("GET/labA:big.raw"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n < 20<<20 {
		t.Errorf("GET of 20 MB: %d, %d bytes", resp.StatusCode, n)
	}
}

// TestSlowBodyClosedAtBodyTimeout: a body that does not come whole within
// body_timeout gets its connection closed, even though it keeps sending.
func TestSlowBodyClosedAtBodyTimeout(t *testing.T) {
	e := newEnvWith(t, `body_timeout = "1s"`, tenantsAB)
	conn := e.rawConn(t, "labA")
	defer conn.Close()
	fmt.Fprintf(conn, "POST /redis/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nSET/labA:slow/")
	start := time.Now()
	go func() { // a byte every 50 ms, never done in time
		for range 200 {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a slow body: %d", resp.StatusCode)
		}
	}
	if _, err := r.ReadByte(); err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("the connection stayed %v after body_timeout 1s (%v)", time.Since(start), err)
	}
}

// TestEvictionPolicyWarnedAtStart: a hub with allkeys-lru is named in the
// gateway's log at start.
func TestEvictionPolicyWarnedAtStart(t *testing.T) {
	e := newEnv(t, tenantsAB)
	if _, err := e.direct(t).Do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); err != nil {
		t.Fatal(err)
	}
	cfg := *e.cfg
	cfg.Listen = "127.0.0.1:0"
	logs := &syncBuf{}
	g, err := gateway.New(&cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if !strings.Contains(logs.String(), `"maxmemory-policy":"allkeys-lru"`) {
		t.Errorf("no warning of allkeys-lru in:\n%s", logs.String())
	}
}
