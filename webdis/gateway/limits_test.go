package gateway_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLimits: body size, open streams per tenant, slow headers; and the
// metrics that count them.
func TestLimits(t *testing.T) {
	e := newEnv(t, tenantsAB)
	b := e.client(t, "labB")

	big := enc("SET", "labB:big", strings.Repeat("v", 1<<20))
	if status, _ := post(t, b, e.url, big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over max_body_bytes: %d, want 413", status)
	}
	if status, body := post(t, b, e.url, enc("SET", "labB:ok", strings.Repeat("v", 900<<10))); status != 200 || body != "+OK\r\n" {
		t.Errorf("a body under the limit: %d %q", status, body)
	}

	// max_streams = 4 per tenant: the fifth is refused, A is not affected.
	var streams []*events
	for range 4 {
		streams = append(streams, subscribe(t, b, e.url, "__keyspace@0__:labB:*"))
	}
	if status, _ := post(t, b, e.url, enc("PSUBSCRIBE", "__keyspace@0__:labB:*")); status != http.StatusTooManyRequests {
		t.Errorf("a fifth stream: %d, want 429", status)
	}
	subscribe(t, e.client(t, "labA"), e.url, "__keyspace@0__:labA:*")
	streams[0].cancel()
	<-streams[0].done
	time.Sleep(100 * time.Millisecond) // the handler notices the client left
	subscribe(t, b, e.url, "__keyspace@0__:labB:*")

	// Headers that never end: the connection is closed after header_timeout.
	cert, key, err := e.ca.IssueClient("labB", 0)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := tls.X509KeyPair(cert, key)
	conn, err := tls.Dial("tcp", e.g.Addr(), &tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("POST /redis/ HTTP/1.1\r\nHost: x\r\n"))
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(conn)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a request whose headers never end held its connection %v", d)
	}

	rec := httptest.NewRecorder()
	e.g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := rec.Body.String()
	for _, want := range []string{
		`redisrepl_gateway_refusals_total{reason="body too large",tenant="labB"} 1`,
		`redisrepl_gateway_refusals_total{reason="too many open streams",tenant="labB"} 1`,
		`redisrepl_gateway_open_streams{tenant="labA"} 1`,
		`redisrepl_gateway_open_streams{tenant="labB"} 4`,
		`redisrepl_gateway_requests_total{code="413",tenant="labB"} 1`,
		`redisrepl_gateway_bytes_total{direction="in",tenant="labB"}`,
		`redisrepl_gateway_request_duration_seconds_count{tenant="labB"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
