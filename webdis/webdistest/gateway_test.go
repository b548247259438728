package webdistest

import (
	"strings"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/config"
)

// TestGatewayFront: a hub fronted by the gateway answers at the same URL
// shape for the same client certificate, stops and starts like nginx, and
// confines extra tenants.
func TestGatewayFront(t *testing.T) {
	h := New(t, Options{Front: FrontGateway, Namespaces: []string{"a:"}, Log: t.Logf,
		Tenants: []config.Tenant{{Name: "other", Client: "other", Namespaces: []string{"b:"}}}})
	if h.Gateway == nil || h.WebdisAddr != "" || !strings.HasSuffix(h.URL, "/redis") {
		t.Fatalf("hub: gateway %v, webdis %q, URL %q", h.Gateway, h.WebdisAddr, h.URL)
	}
	c, err := h.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	ask := func(body string) (int, string) {
		code, data, err := post(c, h.URL+"/", body)
		if err != nil {
			return 0, err.Error()
		}
		return code, string(data)
	}
	if code, body := ask("SET/a:k/v.raw"); code != 200 || body != "+OK\r\n" {
		t.Fatalf("SET in the namespace: %d %q", code, body)
	}
	if code, body := ask("SET/b:k/v.raw"); code != 200 || !strings.HasPrefix(body, "-NOPERM") {
		t.Errorf("SET outside the namespace: %d %q", code, body)
	}
	if err := h.StopNginx(); err != nil {
		t.Fatal(err)
	}
	if code, _ := ask("PING"); code != 0 {
		t.Errorf("gateway stopped: HTTP %d", code)
	}
	if err := h.StartWebdis(); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	if code, body := ask("GET/a:k"); code != 200 || body != `{"GET":"v"}` {
		t.Errorf("after a restart of the gateway: %d %q", code, body)
	}
	if err := h.RestartRemoteRedis(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the tenant served after the remote restarted", func() bool {
		code, body := ask("SET/a:k/w.raw")
		return code == 200 && body == "+OK\r\n"
	})
}

func TestNginxSize(t *testing.T) {
	for in, want := range map[string]int64{"": 1 << 20, "1m": 1 << 20, "64k": 64 << 10, "512": 512, "2g": 2 << 30} {
		if got, err := nginxSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	if _, err := nginxSize("lots"); err == nil {
		t.Error("no error for lots")
	}
}
