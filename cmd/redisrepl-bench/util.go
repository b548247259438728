package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// series holds one value per round for each measured quantity.
type series map[string][]float64

func (s series) add(k string, v float64) { s[k] = append(s[k], v) }

func (s series) med(k string) float64 { return median(s[k]) }

// headline is a figure's main value, the series k printed as label: the
// median, then label_min and label_max.
func (s series) headline(label, k string) []any {
	xs := s[k]
	if len(xs) == 0 {
		return []any{label, "n/a"}
	}
	return []any{label, median(xs), label + "_min", slices.Min(xs), label + "_max", slices.Max(xs)}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile of sorted xs, nearest rank.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// linkConfig is a link between hub's local Redis and its remote for
// namespace ns, with the defaults config applies (as link/helpers_test.go).
func linkConfig(hub *webdistest.Hub, ns string) config.Link {
	return config.Link{
		Name:      "bench",
		Local:     hub.LocalAddr,
		LocalAddr: hub.LocalAddr,
		Namespace: ns,
		Remote:    hub.URL,
		Cert:      hub.Cert,
		Key:       hub.Key,
		CA:        hub.CA,
	}.WithDefaults()
}

// runningLink is a link running in this process.
type runningLink struct {
	*link.Link
	cancel  context.CancelFunc
	done    chan error
	started time.Time
}

// startLink runs a link until stop (or ctx) and, with live, waits until it
// is live (subscribed and done with its first resync).
func (b *bench) startLink(ctx context.Context, cfg config.Link, live bool) (*runningLink, error) {
	if b.workers > 0 {
		cfg.Workers = b.workers
	}
	l, err := link.New(cfg, b.logger())
	if err != nil {
		return nil, err
	}
	return b.runLink(ctx, l, live)
}

// runLink is startLink for a link built.
func (b *bench) runLink(ctx context.Context, l *link.Link, live bool) (*runningLink, error) {
	lctx, cancel := context.WithCancel(ctx)
	r := &runningLink{Link: l, cancel: cancel, done: make(chan error, 1), started: time.Now()}
	go func() { r.done <- l.Run(lctx) }()
	if live {
		if err := waitUntil(ctx, 60*time.Second, 5*time.Millisecond, func() bool { return l.State() == link.Live }); err != nil {
			r.stop()
			return nil, fmt.Errorf("link not live (state %s, last error %q): %w", l.State(), l.LastError(), err)
		}
	}
	return r, nil
}

func (r *runningLink) stop() {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			progress("link.Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		progress("the link did not stop within 20s")
	}
}

// waitUntil polls cond every `every` until it holds, ctx is done or d
// passes.
func waitUntil(ctx context.Context, d, every time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	t := time.NewTicker(every)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", errTimeout, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// dialBoth opens a direct connection to each redis-server of hub.
func dialBoth(hub *webdistest.Hub) (local, remote redis.Conn, err error) {
	if local, err = hub.Local(); err != nil {
		return nil, nil, err
	}
	if remote, err = hub.Remote(); err != nil {
		local.Close()
		return nil, nil, err
	}
	return local, remote, nil
}

// flush empties both redis-servers.
func flush(conns ...redis.Conn) error {
	for _, c := range conns {
		if _, err := c.Do("FLUSHALL"); err != nil {
			return err
		}
	}
	return nil
}

// pipelineSet writes n keys on c, 1000 commands per round trip:
// SET key(i) val(i).
func pipelineSet(ctx context.Context, c redis.Conn, n int, key func(i int) []byte, val func(i int) []byte) error {
	const chunk = 1000
	for i := 0; i < n; i += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(chunk, n-i)
		for j := range m {
			if err := c.Send("SET", key(i+j), val(i+j)); err != nil {
				return err
			}
		}
		if err := c.Flush(); err != nil {
			return err
		}
		for range m {
			if _, err := c.Receive(); err != nil {
				return err
			}
		}
	}
	return nil
}

// numKey is prefix followed by i in decimal.
func numKey(prefix string, i int) []byte {
	return strconv.AppendInt([]byte(prefix), int64(i), 10)
}

func dbsize(c redis.Conn) (int, error) { return redis.Int(c.Do("DBSIZE")) }

// info reads INFO section as a map of its "name:value" lines.
func info(c redis.Conn, section string) (map[string]string, error) {
	s, err := redis.String(c.Do("INFO", section))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m, nil
}

// commandCalls reads INFO commandstats: calls per command ("set", "evalsha").
// Commands run by scripts are counted too.
func commandCalls(c redis.Conn) (map[string]int64, error) {
	m, err := info(c, "commandstats")
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for k, v := range m {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(f, "calls="); ok {
				calls[name], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return calls, nil
}

// rdbChanges is INFO persistence's rdb_changes_since_last_save: the number of
// changes to the dataset (the servers run without saving, so it only grows).
func rdbChanges(c redis.Conn) (int64, error) {
	m, err := info(c, "persistence")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(m["rdb_changes_since_last_save"], 10, 64)
}

// histSnapshot is one of the link's histograms at one moment; quantileSince
// of two tells about what happened between them.
type histSnapshot struct {
	cum    []uint64
	n      uint64
	bounds []float64
}

func snap(h *link.Histogram) histSnapshot {
	cum, n, _ := h.Snapshot()
	return histSnapshot{cum, n, h.Bounds}
}

// quantileSince is the upper bound (ms) of the bucket holding quantile q of
// the observations since old; -1 when none.
func (s histSnapshot) quantileSince(old histSnapshot, q float64) float64 {
	n := s.n - old.n
	if n == 0 {
		return -1
	}
	rank := uint64(q*float64(n) + 0.5)
	for i := range s.cum {
		c := s.cum[i]
		if old.cum != nil {
			c -= old.cum[i]
		}
		if c >= rank {
			return s.bounds[i] * 1000
		}
	}
	return s.bounds[len(s.bounds)-1] * 1000
}
