package examples_test

// examples/prometheus/redisrepl-rules.yml and examples/grafana/redisrepl.json
// against Debian's prometheus scraping a running link and gateway.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// buildRedisrepl builds cmd/redisrepl into dir.
func buildRedisrepl(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "redisrepl")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redisrepl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// promAPI is a Prometheus server's HTTP API.
type promAPI struct {
	t    *testing.T
	base string
}

// get decodes the data of a successful API answer into out.
func (p promAPI) get(path string, q url.Values, out any) error {
	resp, err := http.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("%s: %v: %.300s", path, err, body)
	}
	if doc.Status != "success" {
		return fmt.Errorf("%s %v: %s", path, q, doc.Error)
	}
	return json.Unmarshal(doc.Data, out)
}

// series are the series expr returns now.
func (p promAPI) series(expr string) (int, error) {
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return 0, err
	}
	if data.ResultType != "vector" {
		return 0, fmt.Errorf("%s: result type %s", expr, data.ResultType)
	}
	return len(data.Result), nil
}

// dashboardExprs are the PromQL expressions of every panel of the
// dashboard, and the metric selectors of its query variables, with the
// variables replaced by what "All" selects and Grafana's intervals by 1m.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	subst := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "5m",
		"$instance", ".*", "$link", ".*", "$gateway", ".*", "$tenant", ".*")
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				out[fmt.Sprintf("panel %q query %d", p.Title, i)] = subst.Replace(tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	vars := map[string]bool{}
	labelValues := regexp.MustCompile(`^label_values\((.+), *([a-z_]+)\)$`)
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values(SELECTOR, LABEL)", v.Name, v.Query)
			continue
		}
		out["variable "+v.Name] = fmt.Sprintf("count by (%s) (%s)", m[2], subst.Replace(m[1]))
	}
	for _, want := range []string{"instance", "link"} {
		if !vars[want] {
			t.Errorf("the dashboard has no %q variable", want)
		}
	}
	return out
}

// comparison is a trailing comparison with a constant: an alert's
// threshold.
var comparison = regexp.MustCompile(`\s*(==|!=|>=|<=|>|<)\s*[-0-9.e*+ ]+$`)

// topLevel splits expr at sep where no parenthesis is open.
func topLevel(expr, sep string) []string {
	var out []string
	depth, from := 0, 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '(':
			depth++
		case ')':
			depth--
		}
		if depth == 0 && strings.HasPrefix(expr[i:], sep) {
			out = append(out, expr[from:i])
			from = i + len(sep)
			i += len(sep) - 1
		}
	}
	return append(out, expr[from:])
}

// ruleParts are the expressions an alert's expr is made of ("or"), their
// thresholds cut off: each must return a series when all is well, so that a
// misspelled metric cannot hide behind "no series, no alert".
func ruleParts(expr string) []string {
	var out []string
	for _, part := range topLevel(strings.Join(strings.Fields(expr), " "), " or ") {
		out = append(out, comparison.ReplaceAllString(strings.TrimSpace(part), ""))
	}
	return out
}

// Every query of the dashboard and every alert rule returns series from a
// real Prometheus scraping a running link and gateway, the rules load
// without error, and none fires while all is well.
func TestDashboardAndRulesAgainstPrometheus(t *testing.T) {
	prometheus := webdistest.RequireProgram(t, "prometheus", "prometheus")
	hub := webdistest.New(t, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"mon:"},
		Limits: config.Limits{MaxMemory: 1 << 30}, Log: t.Logf}) // a quota, for its series
	dir := t.TempDir()

	// The gateway's /metrics, as "redisrepl gateway" serves it.
	gwLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwSrv := &http.Server{Handler: hub.Gateway.MetricsHandler()}
	go gwSrv.Serve(gwLn)
	defer gwSrv.Close()

	bin := buildRedisrepl(t, dir)
	linkAddr := freeAddr(t)
	cfg := filepath.Join(dir, "redisrepl.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[service]
metrics_addr = %q

[[link]]
name = "mon"
local = %q
remote = %q
namespace = "mon:"
cert = %q
key = %q
ca = %q
`, linkAddr, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA)), 0o644); err != nil {
		t.Fatal(err)
	}
	link := start(t, dir, "redisrepl", linkAddr, syscall.SIGKILL, bin, "-config", cfg)
	waitFor(t, link, "/healthz 200", func() error {
		resp, err := http.Get("http://" + linkAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/healthz %d", resp.StatusCode)
		}
		return nil
	})

	rules, err := filepath.Abs("prometheus/redisrepl-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: redisrepl
    static_configs: [{targets: [%q]}]
  - job_name: redisrepl-gateway
    static_configs: [{targets: [%q]}]
`, rules, linkAddr, gwLn.Addr().String())), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, dir, "prometheus", promAddr, syscall.SIGKILL, prometheus,
		"--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	api := promAPI{t: t, base: "http://" + promAddr}
	waitFor(t, prom, "both targets up", func() error {
		n, err := api.series("up == 1")
		if err == nil && n != 2 {
			err = fmt.Errorf("%d targets up", n)
		}
		return err
	})

	// Traffic: keys copied through the gateway (lag, keys/s, requests,
	// bytes) and one request the gateway refuses (refusals).
	local, err := hub.Local()
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	client, err := hub.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if _, err := local.Do("SET", fmt.Sprintf("mon:%d", i), "v"); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			resp, err := client.Get(hub.URL + "/CONFIG/GET/maxmemory")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}

	exprs := dashboardExprs(t, "grafana/redisrepl.json")
	var ruleDoc struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Query     string `json:"query"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	alerts := map[string]bool{}
	waitFor(t, prom, "the rules evaluated", func() error {
		if err := api.get("/api/v1/rules", url.Values{"type": {"alert"}}, &ruleDoc); err != nil {
			return err
		}
		for _, g := range ruleDoc.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return fmt.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
				}
			}
		}
		return nil
	})
	for _, g := range ruleDoc.Groups {
		for _, r := range g.Rules {
			alerts[r.Name] = true
			for i, part := range ruleParts(r.Query) {
				exprs[fmt.Sprintf("rule %s part %d", r.Name, i)] = part
			}
		}
	}
	for _, want := range []string{"RedisreplLinkNotLive", "RedisreplLagHigh", "RedisreplEventsNotProved", "RedisreplKeyErrors",
		"RedisreplResyncFailing", "RedisreplCertificateExpiring", "RedisreplGatewayRefusalsSpiking", "RedisreplGatewayHubDown", "RedisreplGatewayTenantNearQuota"} {
		if !alerts[want] {
			t.Errorf("Prometheus loaded no alert %s from %s", want, rules)
		}
	}
	if len(alerts) != 9 {
		t.Errorf("Prometheus loaded %d alerts, want 9: %v", len(alerts), alerts)
	}

	for what, expr := range exprs {
		var n int
		var err error
		for end := time.Now().Add(10 * time.Second); ; {
			if n, err = api.series(expr); (err == nil && n > 0) || time.Now().After(end) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		switch {
		case err != nil:
			t.Errorf("%s: %v", what, err)
		case n == 0:
			t.Errorf("%s returns no series: %s", what, expr)
		}
	}

	var firing struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := api.get("/api/v1/alerts", nil, &firing); err != nil {
		t.Fatal(err)
	}
	for _, a := range firing.Alerts {
		if a.State == "firing" {
			t.Errorf("alert %s fires while all is well: %v", a.Labels["alertname"], a.Labels)
		}
	}
}

// The alert rules pass promtool's checks, and its unit tests
// (examples/prometheus/redisrepl-rules.test.yml): each alert fires on its
// fault, not before its "for", and not for the healthy series beside it.
func TestAlertRulesPromtool(t *testing.T) {
	promtool := webdistest.RequireProgram(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "redisrepl-rules.yml"}, {"test", "rules", "redisrepl-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s did not say SUCCESS:\n%s", strings.Join(args, " "), out)
		}
	}
}
