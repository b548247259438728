package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
)

// The endpoints on [service] metrics_addr:
//
//	/healthz  200 "ok" when every link of the configuration in force is
//	          live and that configuration is the last one read; else 503
//	          and one reason per line.
//	/status   JSON: the configuration file, its generation, the last reload
//	          error, and per link its status, start count and settings
//	          (passwords left out).
//	/metrics  Prometheus text, read from the links at scrape time.
//	/         the status page: every link at a glance, for a person
//	          (statuspage.html); it reads /status and /status/history.
//	/status/history
//	          JSON: per link, lag p99 and keys/s of each of the last
//	          historyLen intervals of historyEvery (history.go).

// bindRetry is how often a metrics_addr that could not be bound is tried
// again.
const bindRetry = 10 * time.Second

// serveHTTP serves the endpoints on addr until ctx is done, and returns a
// function that waits until the server has shut down.
//
// A bind error (address in use, no such address) does not stop the service:
// replicating matters more than observing it, and exiting would make a
// supervisor restart redisrepl in a loop, replicating nothing. The error is
// logged at once, and binding is retried every bindRetry, so that the
// endpoints come up once the address is free (e.g. when the process being
// replaced by a restart lets go of it). /healthz stays unreachable meanwhile,
// which monitoring notices.
func (s *service) serveHTTP(ctx context.Context, addr string) (wait func()) {
	hist := newHistory()
	srv := &http.Server{Handler: s.handler(hist), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.log.Error().Err(err).Str("metrics_addr", addr).
			Msgf("cannot serve /metrics, /healthz and /status; replicating anyway, retrying every %v", bindRetry)
	}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		hist.run(ctx, s)
	}()
	go func() {
		defer close(done)
		defer func() { <-sampled }()
		for ln == nil {
			if !sleepUntil(ctx, bindRetry) {
				return
			}
			if ln, err = net.Listen("tcp", addr); err != nil {
				s.log.Debug().Err(err).Str("metrics_addr", addr).Msg("metrics_addr still not available")
			}
		}
		s.log.Info().Str("metrics_addr", ln.Addr().String()).Msg("serving /metrics, /healthz and /status")
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("metrics server failed")
		}
		<-stopped
	}()
	return func() { <-done }
}

func sleepUntil(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *service) handler(hist *history) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /status/history", hist.serve)
	mux.HandleFunc("GET /{$}", serveStatusPage)
	return mux
}

// problems are the reasons the service is not healthy; none when it is.
func (v serviceView) problems() []string {
	var out []string
	if v.stopping {
		return []string{"stopping"}
	}
	if v.gen == 0 {
		out = append(out, "no configuration applied yet")
	}
	if v.loadErr != nil {
		out = append(out, "configuration not reloaded (the previous one is in force): "+
			strings.ReplaceAll(v.loadErr.Error(), "\n", "; "))
	}
	for _, l := range v.links {
		switch {
		case l.r == nil && l.failed != "":
			out = append(out, fmt.Sprintf("link %q: not running: %s", l.cfg.Name, l.failed))
		case l.r == nil:
			out = append(out, fmt.Sprintf("link %q: restarting", l.cfg.Name))
		case l.r.link.State() != link.Live:
			msg := fmt.Sprintf("link %q: %s", l.cfg.Name, l.r.link.State())
			if e := l.r.link.LastError(); e != "" {
				msg += " (last error: " + e + ")"
			}
			out = append(out, msg)
		}
		if l.r != nil && l.files != nil {
			out = append(out, fmt.Sprintf("link %q: %v (since %s): running on the certificates it loaded at start",
				l.cfg.Name, l.files, l.filesSince.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

func (s *service) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p := s.view().problems(); len(p) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(p, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}

// statusDoc is the /status document.
type statusDoc struct {
	ConfigFile      string        `json:"config_file"`
	Generation      int           `json:"generation"` // +1 per configuration applied
	AppliedAt       time.Time     `json:"applied_at,omitzero"`
	ReloadErrors    int           `json:"reload_errors"`               // failed reloads since the start
	LastReloadError *reloadError  `json:"last_reload_error,omitempty"` // absent when the file in force is the last read
	Healthy         bool          `json:"healthy"`                     // what /healthz says
	Problems        []string      `json:"problems,omitempty"`
	Links           []linkSummary `json:"links"`
}

type reloadError struct {
	At       time.Time       `json:"at"`
	Error    string          `json:"error"`    // as logged: FILE:LINE: link "NAME": FIELD: MESSAGE, one per line
	Problems []configProblem `json:"problems"` // the same, split up
}

type configProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Link    string `json:"link,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type linkSummary struct {
	link.Status
	Starts    int        `json:"starts"` // times this link was started by this process
	StartedAt time.Time  `json:"started_at,omitzero"`
	Config    linkConfig `json:"config"`

	// FileProblem is set while a certificate, key or CA file of the running
	// link cannot be used (missing, unreadable, not loadable): the link runs
	// on what it loaded at start.
	FileProblem string `json:"file_problem,omitempty"`
}

// linkConfig is a link's settings, without secrets.
type linkConfig struct {
	Local           string           `json:"local"` // password replaced by xxxxx
	LocalDB         int              `json:"local_db"`
	Namespace       string           `json:"namespace"`
	Remote          string           `json:"remote"`
	RemoteDB        int              `json:"remote_db"`
	Cert            string           `json:"cert"`
	Key             string           `json:"key"` // the path only
	CA              string           `json:"ca"`
	Direction       config.Direction `json:"direction"`
	Conflict        config.Conflict  `json:"conflict"`
	ResyncInterval  string           `json:"resync_interval,omitempty"`
	StateFile       string           `json:"state_file,omitempty"`
	Workers         int              `json:"workers"`
	BatchKeys       int              `json:"batch_keys"`
	MaxRequestBytes int              `json:"max_request_bytes"`
	MaxDirtyKeys    int              `json:"max_dirty_keys"`
	MaxValueBytes   int64            `json:"max_value_bytes"`
}

func summarizeConfig(l config.Link) linkConfig {
	c := linkConfig{
		Local: l.LocalRedacted(), LocalDB: l.LocalDB, Namespace: l.Namespace,
		Remote: l.RemoteRedacted(), RemoteDB: l.RemoteDB, Cert: l.Cert, Key: l.Key, CA: l.CA,
		Direction: l.Direction, Conflict: l.Conflict, StateFile: l.StateFile,
		Workers: l.Workers, BatchKeys: l.BatchKeys, MaxRequestBytes: l.MaxRequestBytes,
		MaxDirtyKeys: l.MaxDirtyKeys, MaxValueBytes: l.MaxValueBytes,
	}
	if l.ResyncInterval.Duration > 0 {
		c.ResyncInterval = l.ResyncInterval.String()
	}
	return c
}

func (s *service) status(w http.ResponseWriter, _ *http.Request) {
	v := s.view()
	doc := statusDoc{ConfigFile: v.path, Generation: v.gen, AppliedAt: v.appliedAt,
		ReloadErrors: v.reloadErrors, Problems: v.problems(), Links: []linkSummary{}}
	doc.Healthy = len(doc.Problems) == 0
	if v.loadErr != nil {
		re := &reloadError{At: v.loadErrAt, Error: v.loadErr.Error()}
		var list config.ErrorList
		var one *config.Error
		switch {
		case errors.As(v.loadErr, &list):
			for _, e := range list {
				re.Problems = append(re.Problems, configProblem{e.File, e.Line, e.Link, e.Field, e.Msg})
			}
		case errors.As(v.loadErr, &one):
			re.Problems = []configProblem{{one.File, one.Line, one.Link, one.Field, one.Msg}}
		default: // unreadable or deleted file
			re.Problems = []configProblem{{File: v.path, Message: v.loadErr.Error()}}
		}
		doc.LastReloadError = re
	}
	for _, l := range v.links {
		ls := linkSummary{Starts: l.starts, Config: summarizeConfig(l.cfg)}
		switch {
		case l.r != nil:
			ls.Status, ls.StartedAt = l.r.link.Status(), l.r.started
			if l.files != nil {
				ls.FileProblem = l.files.Error()
			}
		case l.failed != "":
			ls.Status = link.Status{Name: l.cfg.Name, State: stateFailed, Direction: l.cfg.Direction, LastError: l.failed}
		default:
			ls.Status = link.Status{Name: l.cfg.Name, State: idleState(v), Direction: l.cfg.Direction}
		}
		doc.Links = append(doc.Links, ls)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc)
}

// idleState is the state of a link of the configuration that is not running
// and did not fail to start.
func idleState(v serviceView) link.State {
	if v.stopping {
		return link.Stopped
	}
	return stateRestarting
}

// The supervisor's states of a link that is not running.
const (
	stateFailed     link.State = "failed"     // could not start
	stateRestarting link.State = "restarting" // being replaced after a change
)

// linkStates are the values of redisrepl_link_state's "state" label: the
// link's own states, and "failed" (could not start) and "restarting" (being
// replaced after a change) from the supervisor.
var linkStates = []link.State{link.Starting, link.Resyncing, link.Live, link.Degraded, link.Stopped, stateFailed, stateRestarting}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("redisrepl_"+name, help, append([]string{"link"}, labels...), nil)
}

var (
	descEvents     = desc("events_total", "Keyspace events read, by side (local, remote).", "side")
	descKeys       = desc("keys_written_total", "Keys written (deletes included), by direction (to_remote, to_local).", "direction")
	descBytes      = desc("bytes_written_total", "Value bytes written, by direction (to_remote, to_local).", "direction")
	descSkipped    = desc("keys_skipped_total", "Dirty keys found already in sync (echoes of the link's own writes, no-ops).")
	descRequests   = desc("remote_requests_total", "Requests sent to the remote Webdis.")
	descErrors     = desc("errors_total", "Replication errors.")
	descKeyErrors  = desc("key_errors_total", "Keys that could not be read, copied or written on their own (reported by name in the log).")
	descLapses     = desc("event_lapses_total", "Times a side's keyspace events stopped arriving (the canary's event did not come back).")
	descResyncs    = desc("resyncs_total", "Full comparisons of both namespaces.")
	descRepaired   = desc("keys_repaired_total", "Keys that resyncs found different and queued for repair.")
	descDirty      = desc("dirty_keys", "Keys waiting to be copied.")
	descSynced     = desc("synced_keys", "Keys whose synced state the link remembers.")
	descState      = desc("link_state", "1 for the link's current state, 0 for the others.", "state")
	descStarts     = desc("link_starts_total", "Times the link was started by this process (a changed link restarts).")
	descLag        = desc("replication_lag_seconds", "Delay from a key's change to its copy on the other side.")
	descLatency    = desc("remote_request_duration_seconds", "Duration of requests to the remote Webdis.")
	descProved     = desc("events_proved_timestamp_seconds", "When a canary's keyspace event last came back on a side the link listens to (Unix time; the link's start until the first). Absent where events cannot be proved.", "side")
	descResyncOK   = desc("last_resync_success", "1 when the link's last full comparison succeeded, 0 when it failed; absent before the first ends.")
	descGeneration = prometheus.NewDesc("redisrepl_config_generation", "Configuration generation: 1 for the first, +1 per applied reload.", nil, nil)
	descReloadErrs = prometheus.NewDesc("redisrepl_config_reload_errors_total", "Reloads refused because the file did not validate or could not be read.", nil, nil)
	allDescs       = []*prometheus.Desc{descEvents, descKeys, descBytes, descSkipped, descRequests, descErrors, descKeyErrors, descLapses,
		descResyncs, descRepaired, descDirty, descSynced, descState, descStarts, descLag, descLatency, descGeneration, descReloadErrs, descCertExpiry,
		descProved, descResyncOK}
)

// collector reads the links' counters when Prometheus scrapes: nothing is
// added to the replication path.
type collector struct{ s *service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	v := c.s.view()
	ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(v.gen))
	ch <- prometheus.MustNewConstMetric(descReloadErrs, prometheus.CounterValue, float64(v.reloadErrors))
	collectCertExpiry(v, ch)
	for _, l := range v.links {
		name := l.cfg.Name
		counter := func(d *prometheus.Desc, n int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), append([]string{name}, labels...)...)
		}
		gauge := func(d *prometheus.Desc, n float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, n, append([]string{name}, labels...)...)
		}
		counter(descStarts, int64(l.starts))
		state := idleState(v)
		if l.failed != "" {
			state = stateFailed
		}
		if l.r != nil {
			lk := l.r.link
			st := lk.Status()
			state = st.State
			s := &lk.Stats
			counter(descEvents, s.EventsLocal.Load(), "local")
			counter(descEvents, s.EventsRemote.Load(), "remote")
			counter(descKeys, s.KeysToRemote.Load(), "to_remote")
			counter(descKeys, s.KeysToLocal.Load(), "to_local")
			counter(descBytes, s.BytesToRemote.Load(), "to_remote")
			counter(descBytes, s.BytesToLocal.Load(), "to_local")
			counter(descSkipped, s.KeysSkipped.Load())
			counter(descRequests, s.RemoteRequests.Load())
			counter(descErrors, s.Errors.Load())
			counter(descKeyErrors, s.KeyErrors.Load())
			counter(descLapses, s.EventLapses.Load())
			counter(descResyncs, s.Resyncs.Load())
			counter(descRepaired, s.Repaired.Load())
			for _, side := range st.Sides {
				if side.EventsFlowing == nil {
					continue // not listened to, or not provable
				}
				at := side.LastProof
				if at.IsZero() {
					at = l.r.started
				}
				gauge(descProved, float64(at.UnixNano())/1e9, side.Side)
			}
			switch {
			case strings.HasPrefix(st.LastResyncOutcome, "ok"):
				gauge(descResyncOK, 1)
			case strings.HasPrefix(st.LastResyncOutcome, "failed"):
				gauge(descResyncOK, 0)
			}
			gauge(descDirty, float64(st.DirtyKeys))
			gauge(descSynced, float64(st.SyncedKeys))
			ch <- histogram(descLag, s.Lag, name)
			ch <- histogram(descLatency, s.RemoteLatency, name)
		}
		for _, st := range linkStates {
			b := 0.0
			if st == state {
				b = 1
			}
			gauge(descState, b, string(st))
		}
	}
}

// histogram turns a link.Histogram into a Prometheus one.
func histogram(d *prometheus.Desc, h *link.Histogram, name string) prometheus.Metric {
	cum, count, sum := h.Snapshot()
	buckets := make(map[float64]uint64, len(cum))
	for i, b := range h.Bounds {
		buckets[b] = cum[i]
	}
	// Snapshot reads the buckets before the total: an observation counted
	// in between would make +Inf smaller than the last bucket.
	if n := len(cum); n > 0 && count < cum[n-1] {
		count = cum[n-1]
	}
	return prometheus.MustNewConstHistogram(d, count, sum, buckets, name)
}
