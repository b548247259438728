package gateway_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/redisrepl/redisrepl/webdis"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func postWith(t *testing.T, c *http.Client, url string, body []byte, h map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// The gateway takes gzipped request bodies and says so on every response
// (RFC 7694), gzips a large reply for a client that asks, and refuses what
// it cannot take by name: a coding it does not know (415), a body that
// does not decode (400), and one that inflates past max_body_bytes (413).
func TestGatewayGzip(t *testing.T) {
	e := newEnv(t, tenantsAB)
	a := e.client(t, "labA")
	value := strings.Repeat("sensor=42.0;", 4<<10) // 48 KiB of text
	set := webdis.AppendCommand(nil, []byte("SET"), []byte("labA:gz"), []byte(value))

	resp, body := postWith(t, a, e.url, gz(t, set), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != 200 || !strings.Contains(string(body), "OK") {
		t.Fatalf("a gzipped SET: HTTP %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Accept-Encoding"); got != "gzip" {
		t.Errorf("Accept-Encoding %q on a response, want gzip", got)
	}
	if got, _ := e.direct(t).Do("GET", "labA:gz"); string(got.([]byte)) != value {
		t.Fatalf("the hub holds %d bytes for a gzipped SET of %d", len(got.([]byte)), len(value))
	}

	get := webdis.AppendCommand(nil, []byte("GET"), []byte("labA:gz"))
	resp, body = postWith(t, a, e.url, get, map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" || len(body) >= len(value)/4 {
		t.Fatalf("a 48 KiB reply to a client taking gzip: Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if v, err := webdis.ParseReply(plain); err != nil || string(v.([]byte)) != value {
		t.Fatalf("the gzipped reply decodes to %d bytes (%v)", len(plain), err)
	}
	resp, body = postWith(t, a, e.url, get, map[string]string{"Accept-Encoding": "identity"})
	if resp.Header.Get("Content-Encoding") != "" || len(body) < len(value) {
		t.Errorf("a client not taking gzip got Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}

	for _, c := range []struct {
		name string
		body []byte
		enc  string
		want int
	}{
		{"unknown coding", set, "br", http.StatusUnsupportedMediaType},
		{"not gzip", set, "gzip", http.StatusBadRequest},
		// 1 MiB max_body_bytes (the harness's): 8 MiB of zeros in ~8 KiB.
		{"inflates past max_body_bytes", gz(t, append(webdis.AppendCommand(nil, []byte("SET"), []byte("labA:bomb")), make([]byte, 8<<20)...)), "gzip", http.StatusRequestEntityTooLarge},
	} {
		resp, _ := postWith(t, a, e.url, c.body, map[string]string{"Content-Encoding": c.enc})
		if resp.StatusCode != c.want {
			t.Errorf("%s: HTTP %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	if n, _ := e.direct(t).Do("EXISTS", "labA:bomb"); n.(int64) != 0 {
		t.Error("the inflated body was written")
	}
}
