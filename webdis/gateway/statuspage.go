package gateway

import (
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/redisrepl/redisrepl/webdis/pki"
)

// The operator's view of the gateway, beside the per-tenant metrics of
// metrics.go: whether the hub answers, when the certificates expire, and a
// status page of the tenants for a person.

var (
	descHubUp = prometheus.NewDesc("redisrepl_gateway_hub_up",
		"1 while the hub Redis answers the gateway's health check, else 0.", nil, nil)
	descCertExpiry = prometheus.NewDesc("redisrepl_gateway_certificate_expiry_timestamp_seconds",
		"When the earliest certificate of the server certificate (role cert) or client CA file (role client_ca) expires (Unix time).",
		[]string{"role", "file"}, nil)
)

// opsCollector reads the hub's health and the certificate files at scrape
// time (an unreadable file has no series).
type opsCollector struct{ g *Gateway }

func (c opsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHubUp
	ch <- descCertExpiry
}

func (c opsCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.g.redisUp.Load() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descHubUp, prometheus.GaugeValue, up)
	for _, f := range [][2]string{{"cert", c.g.cfg.Cert}, {"client_ca", c.g.cfg.ClientCA}} {
		if at, err := pki.EarliestExpiry(f[1]); err == nil {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(at.Unix()), f[0], f[1])
		}
	}
}

// gatherer is what /metrics serves: the tenants' metrics and opsCollector's.
func (g *Gateway) gatherer() prometheus.Gatherer {
	ops := prometheus.NewRegistry()
	ops.MustRegister(opsCollector{g})
	if g.sentinel != nil {
		ops.MustRegister(sentinelCollector{g.sentinel}) // sentinel.go
	}
	return prometheus.Gatherers{g.metrics.reg, ops}
}

// tenantTotals are a tenant's counters since the gateway started.
type tenantTotals struct {
	Requests, Errors  float64 // answered; answered with a status other than 200
	BytesIn, BytesOut float64
	Refusals          map[string]float64 // by reason
}

// totals reads the per-tenant counters from the registry.
func (g *Gateway) totals() map[string]*tenantTotals {
	out := map[string]*tenantTotals{}
	get := func(name string) *tenantTotals {
		if out[name] == nil {
			out[name] = &tenantTotals{Refusals: map[string]float64{}}
		}
		return out[name]
	}
	fams, _ := g.metrics.reg.Gather()
	for _, f := range fams {
		for _, m := range f.Metric {
			l := labels(m)
			v := m.GetCounter().GetValue()
			switch f.GetName() {
			case "redisrepl_gateway_requests_total":
				t := get(l["tenant"])
				t.Requests += v
				if l["code"] != "200" {
					t.Errors += v
				}
			case "redisrepl_gateway_refusals_total":
				get(l["tenant"]).Refusals[l["reason"]] += v
			case "redisrepl_gateway_bytes_total":
				if l["direction"] == "in" {
					get(l["tenant"]).BytesIn += v
				} else {
					get(l["tenant"]).BytesOut += v
				}
			}
		}
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.Label {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// statusPageRow is one tenant on the page.
type statusPageRow struct {
	TenantStatus
	tenantTotals
	State    string   // "ready" or "not-ready"
	Refusals []string // "reason: count", by reason
}

type statusPageData struct {
	Status
	Rows            []statusPageRow
	UnknownRefusals float64 // requests from a certificate of no tenant
	At              string
}

// serveStatusPage is GET /: the tenants at a glance, rendered on the server
// and reloaded by the browser every 5 s; no script, no external file.
func (g *Gateway) serveStatusPage(w http.ResponseWriter, _ *http.Request) {
	d := statusPageData{Status: g.Status(), At: time.Now().UTC().Format(time.RFC3339)}
	totals := g.totals()
	if u := totals[unknownTenant]; u != nil {
		for _, n := range u.Refusals {
			d.UnknownRefusals += n
		}
	}
	for _, t := range d.Tenants {
		r := statusPageRow{TenantStatus: t, State: "not-ready"}
		if t.Ready {
			r.State = "ready"
		}
		if tt := totals[t.Name]; tt != nil {
			r.tenantTotals = *tt
			reasons := make([]string, 0, len(tt.Refusals))
			for reason := range tt.Refusals {
				reasons = append(reasons, reason)
			}
			sort.Strings(reasons)
			for _, reason := range reasons {
				r.Refusals = append(r.Refusals, reason+": "+formatCount(tt.Refusals[reason]))
			}
		}
		d.Rows = append(d.Rows, r)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := statusPageTmpl.Execute(w, d); err != nil {
		g.log.Debug().Err(err).Msg("status page not sent whole")
	}
}

func formatCount(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// statusPageTmpl is the page; html/template escapes every value.
var statusPageTmpl = template.Must(template.New("status").Funcs(template.FuncMap{"formatCount": formatCount, "statusPageCSS": statusPageCSS}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>redisrepl gateway status</title>
<style>
{{statusPageCSS}}
.bad { color: #a00; font-weight: bold; }
.state-ready { background: #d7f5d7; color: #064; }
.state-not-ready { background: #fbd5d5; color: #900; }
</style>
</head>
<body>
<h1>redisrepl gateway</h1>
<p id="hub" data-up="{{.RedisUp}}" {{if not .RedisUp}}class="bad"{{end}}>hub {{.Redis}}: {{if .RedisUp}}answering{{else}}NOT answering{{end}}
 · {{len .Tenants}} tenants · configuration generation {{.Generation}}
 · refused from unknown certificates: <span id="unknown">{{formatCount .UnknownRefusals}}</span></p>
{{if .LastReloadError}}<p id="reload-error" class="bad">last edit of {{.File}} not applied: {{.LastReloadError}}</p>{{end}}
<table id="tenants">
<thead><tr><th>tenant</th><th>state</th><th>client</th><th>namespaces</th><th>requests</th><th>errors</th><th>refusals</th><th>bytes in</th><th>bytes out</th><th>streams</th></tr></thead>
<tbody>
{{range .Rows}}<tr data-tenant="{{.Name}}" data-state="{{.State}}"><td class="name">{{.Name}}</td><td><span class="state state-{{.State}}">{{.State}}</span></td><td class="client">{{.Client}}</td><td class="namespaces">{{range $i, $n := .Namespaces}}{{if $i}}, {{end}}{{$n}}{{end}}</td><td class="requests num">{{formatCount .Requests}}</td><td class="errors num">{{formatCount .Errors}}</td><td class="refusals">{{range $i, $r := .Refusals}}{{if $i}}, {{end}}{{$r}}{{end}}</td><td class="bytes-in num">{{formatCount .BytesIn}}</td><td class="bytes-out num">{{formatCount .BytesOut}}</td><td class="streams num">{{.OpenStreams}}</td></tr>
{{end}}</tbody>
</table>
<footer>Reloads every 5 s. Rendered {{.At}}. <a href="status">/status</a> · <a href="metrics">/metrics</a> · <a href="healthz">/healthz</a></footer>
</body>
</html>
`))
