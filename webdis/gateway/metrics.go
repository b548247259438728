package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics, per tenant (label
// "tenant"; requests from an unknown certificate count as "(unknown)").
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec   // tenant, code
	refusals   *prometheus.CounterVec   // tenant, reason
	bytes      *prometheus.CounterVec   // tenant, direction (in|out)
	latency    *prometheus.HistogramVec // tenant
	streams    *prometheus.GaugeVec     // tenant
	generation prometheus.Gauge
	reloadErrs prometheus.Counter

	mu      sync.Mutex
	tenants map[string]*tenantMetrics
}

// tenantMetrics are one tenant's metric handles, resolved once so that
// the request path does no label lookup for the common cases.
type tenantMetrics struct {
	name     string
	ok       prometheus.Counter // code 200
	in, out  prometheus.Counter
	latency  prometheus.Observer
	streamsG prometheus.Gauge
	streams  atomic.Int32
	conns    atomic.Int64 // open connections to the gateway (throttle.go)
	parent   *metrics
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), tenants: map[string]*tenantMetrics{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redisrepl_gateway_requests_total", Help: "Requests answered, by tenant and HTTP status.",
	}, []string{"tenant", "code"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redisrepl_gateway_refusals_total", Help: "Requests refused by the gateway, by tenant and reason.",
	}, []string{"tenant", "reason"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redisrepl_gateway_bytes_total", Help: "Bytes of commands received (in) and replies sent (out).",
	}, []string{"tenant", "direction"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "redisrepl_gateway_request_duration_seconds", Help: "Time from request to reply (streams excluded).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"tenant"})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "redisrepl_gateway_open_streams", Help: "SUBSCRIBE/PSUBSCRIBE streams open.",
	}, []string{"tenant"})
	m.generation = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "redisrepl_gateway_config_generation", Help: "Configuration files applied since start.",
	})
	m.reloadErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "redisrepl_gateway_config_reload_errors_total", Help: "Edits of the file that did not validate.",
	})
	m.reg.MustRegister(m.requests, m.refusals, m.bytes, m.latency, m.streams, m.generation, m.reloadErrs)
	return m
}

const unknownTenant = "(unknown)"

func (m *metrics) tenant(name string) *tenantMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tenants[name]; ok {
		return t
	}
	t := &tenantMetrics{name: name, parent: m,
		ok:       m.requests.WithLabelValues(name, "200"),
		in:       m.bytes.WithLabelValues(name, "in"),
		out:      m.bytes.WithLabelValues(name, "out"),
		latency:  m.latency.WithLabelValues(name),
		streamsG: m.streams.WithLabelValues(name),
	}
	m.tenants[name] = t
	return t
}

func (t *tenantMetrics) done(code int, in, out int, d time.Duration) {
	if code == http.StatusOK {
		t.ok.Inc()
	} else {
		t.parent.requests.WithLabelValues(t.name, strconv.Itoa(code)).Inc()
	}
	t.in.Add(float64(in))
	t.out.Add(float64(out))
	t.latency.Observe(d.Seconds())
}

func (t *tenantMetrics) refused(reason string) {
	t.parent.refusals.WithLabelValues(t.name, reason).Inc()
}

// TenantStatus is one tenant in /status.
type TenantStatus struct {
	Name        string   `json:"name"`
	Client      string   `json:"client"`
	Namespaces  []string `json:"namespaces"`
	Read        []string `json:"read,omitempty"`
	User        string   `json:"acl_user"`
	Ready       bool     `json:"ready"` // its ACL user is set on the hub
	OpenStreams int32    `json:"open_streams"`
	MemoryBytes int64    `json:"memory_bytes"`         // the estimate of its keys (quota.go)
	MaxMemory   int64    `json:"max_memory,omitempty"` // its quota
}

// Status is the document served at /status.
type Status struct {
	File            string         `json:"file"`
	Generation      int            `json:"generation"`
	LastReloadError string         `json:"last_reload_error,omitempty"`
	LastReloadAt    *time.Time     `json:"last_reload_error_at,omitempty"`
	Redis           string         `json:"redis"`
	RedisUp         bool           `json:"redis_up"`
	Tenants         []TenantStatus `json:"tenants"`
}

// Status describes the tenants in force and the last reload error.
func (g *Gateway) Status() Status {
	st := g.state.Load()
	g.mu.Lock()
	s := Status{File: g.cfg.Path, Generation: st.gen, LastReloadError: g.lastErr, Redis: g.cfg.RedisRedacted()}
	if !g.lastErrAt.IsZero() {
		at := g.lastErrAt
		s.LastReloadAt = &at
	}
	g.mu.Unlock()
	s.RedisUp = g.redisUp.Load()
	for _, t := range st.byName {
		s.Tenants = append(s.Tenants, TenantStatus{Name: t.cfg.Name, Client: t.cfg.Client,
			Namespaces: t.cfg.Namespaces, Read: t.cfg.Read, User: t.user, Ready: t.isReady(),
			OpenStreams: t.m.streams.Load(), MemoryBytes: t.usage.estimate(), MaxMemory: t.cfg.Limits.MaxMemory})
	}
	slices.SortFunc(s.Tenants, func(a, b TenantStatus) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// MetricsHandler serves /metrics, /healthz, /status and the status page (/, statuspage.go).
func (g *Gateway) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", g.serveStatusPage)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		s := g.Status()
		var why []string
		if !s.RedisUp {
			why = append(why, "the hub Redis is not reachable")
		}
		if s.LastReloadError != "" {
			why = append(why, "the last edit of the file was not applied: "+s.LastReloadError)
		}
		for _, t := range s.Tenants {
			if !t.Ready {
				why = append(why, "tenant "+t.Name+": its ACL user is not set")
			}
		}
		if len(why) > 0 {
			http.Error(w, strings.Join(why, "\n"), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(g.Status())
	})
	return mux
}
