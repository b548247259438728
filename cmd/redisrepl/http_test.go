package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// /status and /metrics count what the test wrote.
func TestMetricsAndStatus(t *testing.T) {
	hub := webdistest.New(t, webdistest.Options{Log: t.Logf})
	local, remote := conns(t, hub)
	path := filepath.Join(t.TempDir(), "redisrepl.toml")
	addr := freeAddr(t)
	configFile(t, path, hub, addr, false, "m", "m:")
	p := start(t, "-config", path)
	waitHealthz(t, addr, 200)

	const n = 100
	value := strings.Repeat("v", 10)
	for i := range n {
		local.Send("SET", fmt.Sprintf("m:%d", i), value)
	}
	if err := local.Flush(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := local.Receive(); err != nil {
			t.Fatal(err)
		}
	}
	waitRemote(t, remote, fmt.Sprintf("m:%d", n-1), value)
	st := waitStatus(t, addr, "100 keys counted", func(s statusDocT) bool { l, _ := s.link("m"); return l.KeysToRemote >= n })
	if l, _ := st.link("m"); l.EventsLocal < n || l.State != "live" || l.Starts != 1 || l.Config.Namespace != "m:" || l.Config.Local != hub.LocalAddr {
		t.Fatalf("/status link m: %+v", l)
	}

	code, body := get(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	// value returns the metric of family name whose labels include want.
	metric := func(name string, want ...string) *dto.Metric {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s in /metrics", name)
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, lp := range m.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(want); i += 2 {
				if have[want[i]] != want[i+1] {
					continue next
				}
			}
			return m
		}
		t.Fatalf("no %s%v in /metrics", name, want)
		return nil
	}
	atLeast := func(name string, min float64, labels ...string) {
		t.Helper()
		m := metric(name, labels...)
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if v < min {
			t.Errorf("%s%v = %v, want >= %v", name, labels, v, min)
		}
	}
	atLeast("redisrepl_keys_written_total", n, "link", "m", "direction", "to_remote")
	atLeast("redisrepl_events_total", n, "link", "m", "side", "local")
	atLeast("redisrepl_bytes_written_total", n*float64(len(value)), "link", "m", "direction", "to_remote")
	atLeast("redisrepl_remote_requests_total", 1, "link", "m")
	atLeast("redisrepl_resyncs_total", 1, "link", "m")
	atLeast("redisrepl_synced_keys", n, "link", "m")
	atLeast("redisrepl_config_generation", 1)
	for _, s := range linkStates {
		want := 0.0
		if s == "live" {
			want = 1
		}
		if v := metric("redisrepl_link_state", "link", "m", "state", string(s)).GetGauge().GetValue(); v != want {
			t.Errorf("redisrepl_link_state{state=%q} = %v, want %v", s, v, want)
		}
	}
	if v := metric("redisrepl_config_reload_errors_total").GetCounter().GetValue(); v != 0 {
		t.Errorf("reload errors %v", v)
	}
	if v := metric("redisrepl_keys_written_total", "link", "m", "direction", "to_remote").GetCounter().GetValue(); v < float64(func() int64 { l, _ := st.link("m"); return l.KeysToRemote }()) {
		t.Errorf("/metrics counts fewer keys (%v) than /status did before", v)
	}
	for _, name := range []string{"redisrepl_replication_lag_seconds", "redisrepl_remote_request_duration_seconds"} {
		h := metric(name, "link", "m").GetHistogram()
		if h.GetSampleCount() < 1 || len(h.Bucket) < 16 {
			t.Errorf("%s: %d samples, %d buckets", name, h.GetSampleCount(), len(h.Bucket))
		}
		prev := uint64(0)
		for _, b := range h.Bucket {
			if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
				t.Errorf("%s: bucket le=%v has %d (previous %d, total %d)", name, b.GetUpperBound(), b.GetCumulativeCount(), prev, h.GetSampleCount())
			}
			prev = b.GetCumulativeCount()
		}
	}
	if v := metric("redisrepl_last_resync_success", "link", "m").GetGauge().GetValue(); v != 1 {
		t.Errorf("redisrepl_last_resync_success = %v after a resync that succeeded", v)
	}
	if v := metric("redisrepl_events_proved_timestamp_seconds", "link", "m", "side", "local").GetGauge().GetValue(); time.Since(time.Unix(int64(v), 0)) > 30*time.Second {
		t.Errorf("events of the local side last proved at %v", time.Unix(int64(v), 0))
	}
	for role, file := range map[string]string{"cert": hub.Cert, "ca": hub.CA} {
		want := readCert(t, file).NotAfter.Unix()
		if v := metric("redisrepl_certificate_expiry_timestamp_seconds", "link", "m", "role", role, "file", file).GetGauge().GetValue(); int64(v) != want {
			t.Errorf("certificate expiry of %s = %v, want %d (its NotAfter)", role, v, want)
		}
	}
	if h := metric("redisrepl_replication_lag_seconds", "link", "m").GetHistogram(); h.GetSampleCount() < n {
		t.Errorf("lag observed %d times, want >= %d (one per key written after an event)", h.GetSampleCount(), n)
	}

	if code, body := get(t, "http://"+addr+"/"); code != 200 || !strings.Contains(body, "<title>redisrepl status</title>") {
		t.Errorf("/: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// /status leaves passwords out; /healthz is 503 before a configuration is
// applied and when a link could not start.
func TestStatusWithoutRunning(t *testing.T) {
	s := newService(zerolog.Nop(), "/etc/x.toml")
	srv := httptest.NewServer(s.handler(newHistory()))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/healthz"); code != 503 || !strings.Contains(body, "no configuration") {
		t.Fatalf("/healthz before apply: %d %q", code, body)
	}
	l := config.Link{Name: "p", Local: "redis://u:s3cret-pw@127.0.0.1:6379/0", LocalPassword: "s3cret-pw",
		Remote: "https://hub:pw2@127.0.0.1:1/redis", Namespace: "p:", Direction: "push"}
	s.cfg, s.gen = &config.Config{Path: "/etc/x.toml", Links: []config.Link{l}}, 1
	s.failed["p"] = "client certificate: no such file"
	code, body := get(t, srv.URL+"/status")
	if code != 200 || strings.Contains(body, "s3cret-pw") || strings.Contains(body, "pw2") {
		t.Fatalf("/status: %d\n%s", code, body)
	}
	var doc statusDocT
	if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Links) != 1 || doc.Links[0].State != "failed" || doc.Healthy {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != 503 || !strings.Contains(body, `link "p": not running: client certificate`) {
		t.Fatalf("/healthz with a failed link: %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/metrics"); code != 200 || !strings.Contains(body, `redisrepl_link_state{link="p",state="failed"} 1`) {
		t.Fatalf("/metrics with a failed link: %d\n%s", code, body)
	}
}
