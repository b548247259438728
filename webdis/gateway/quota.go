package gateway

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
)

// Memory quotas (docs/ARCHITECTURE.md, "The hub gateway"). Redis has no
// per-user quota of memory, so the gateway keeps an estimate of what each
// tenant's keys hold and refuses the writes that could grow them while the
// tenant is over its max_memory:
//   - a walk of the hub's keyspace (measureMemory) every memory_scan_interval:
//     SCAN steps of scanStep keys (all tenants at once: SCAN walks the whole
//     keyspace whatever MATCH says), MEMORY USAGE of each key under a
//     tenant's namespace, at most memory_scan_keys_per_second keys a second,
//     so that its cost on the hub's single thread is bounded and spread;
//   - between walks, the bytes of the tenant's writes are added to the
//     estimate, and the sizes of the keys a tenant with a quota deletes
//     (and, once it is past three quarters of it, of those it replaces),
//     asked of the hub first, are taken off: a burst is seen before the
//     next walk, and deletes bring the tenant back under at once;
//   - over quota, reads, deletes, the commands that only remove or move
//     elements, and replacing writes (SET, MSET, the link's whole-key
//     writes) no bigger than what they replace pass, so the tenant can get
//     back under; anything that adds is refused with an error naming the
//     quota. Other tenants are not affected.
//
// The estimate is an estimate: writes made during a walk may be counted
// twice until the next one, and a key SCAN returns twice (the hub resized
// its table meanwhile) is counted twice.

const reasonQuota = "over memory quota"

// scanStep is the COUNT of one SCAN step of the walk.
const scanStep = 1000

// usage is one tenant's estimate, shared by every version of the tenant of
// a name (a reload replaces the tenant, not what it holds).
type usage struct {
	measured atomic.Int64 // the last complete walk's total
	carry    atomic.Int64 // writes before the walk under way began
	delta    atomic.Int64 // writes since the walk under way began
	walked   atomic.Bool  // a walk has completed
}

func (u *usage) estimate() int64 {
	return max(u.measured.Load()+u.carry.Load()+u.delta.Load(), 0)
}

// quotas are the usages by tenant name, and the walk's own metrics.
type quotas struct {
	mu      sync.Mutex
	byName  map[string]*usage
	walks   prometheus.Counter
	walkDur prometheus.Gauge
}

func (q *quotas) of(name string) *usage {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.byName == nil {
		q.byName = map[string]*usage{}
	}
	u, ok := q.byName[name]
	if !ok {
		u = &usage{}
		q.byName[name] = u
	}
	return u
}

// growth is what a command may do to the memory its keys hold.
type growth uint8

const (
	growNone    growth = iota // reads, and writes that only remove, move or set a TTL
	growReplace               // whole keys replaced by what the arguments carry
	growAdd                   // may add to a key, or make one
	growDelete                // removes whole keys (DEL, UNLINK, GETDEL)
)

// adding are the commands of the allow-list that may add memory and do
// not replace whole keys (policy.go: aclCommands).
var adding = setOf(`APPEND DECR DECRBY INCR INCRBY INCRBYFLOAT MSETNX SETNX SETRANGE COPY
HINCRBY HINCRBYFLOAT HMSET HSET HSETNX LINSERT LPUSH LPUSHX RPUSH RPUSHX LSET
SADD SDIFFSTORE SINTERSTORE SUNIONSTORE ZADD ZDIFFSTORE ZINCRBY ZINTERSTORE ZRANGESTORE ZUNIONSTORE
XADD XAUTOCLAIM XCLAIM XGROUP XREADGROUP XSETID BITFIELD BITOP SETBIT PFADD PFMERGE GEOADD GEOSEARCHSTORE`)

var (
	linkReplacing = setOf(linkReplacingSHAs...)
	linkGrowing   = setOf(linkGrowingSHAs...)
)

func setOf(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		for _, f := range strings.Fields(w) {
			m[f] = true
		}
	}
	return m
}

// LinkStagingMark is what the name of a link's staging key holds.
func LinkStagingMark() string { return linkStagingMark }

// LinkWritingScripts are the SHA1s of the link's replacing and growing
// scripts (link/store.WritingScripts), sorted.
func LinkWritingScripts() (replacing, growing []string) {
	return slices.Sorted(slices.Values(linkReplacingSHAs)), slices.Sorted(slices.Values(linkGrowingSHAs))
}

// growthOf says what c may do to memory; for a replacing write, keys are
// the keys it replaces and size the bytes it writes.
func growthOf(c *command) (g growth, keys [][]byte, size int64) {
	args := c.args[1:]
	sum := func(vs ...[]byte) (n int64) {
		for _, v := range vs {
			n += int64(len(v))
		}
		return n
	}
	switch name := c.name(); name {
	case "DEL", "UNLINK", "GETDEL":
		return growDelete, args, 0
	case "SET", "GETSET":
		if len(args) >= 2 {
			return growReplace, args[:1], sum(args[1])
		}
	case "SETEX", "PSETEX":
		if len(args) >= 3 {
			return growReplace, args[:1], sum(args[2])
		}
	case "MSET":
		for i := 0; i+1 < len(args); i += 2 {
			keys, size = append(keys, args[i]), size+sum(args[i+1])
		}
		return growReplace, keys, size
	case "SORT", "GEORADIUS", "GEORADIUSBYMEMBER":
		for _, a := range args {
			if equalFold(a, "STORE") || equalFold(a, "STOREDIST") {
				return growAdd, nil, 0
			}
		}
	case "EVAL", "EVALSHA":
		sha := scriptSHA(c.args)
		switch {
		case linkGrowing[sha]:
			return growAdd, nil, 0
		case linkReplacing[sha]:
			if len(args) < 2 {
				return growAdd, nil, 0 // Redis answers the error
			}
			n, err := strconv.Atoi(string(args[1]))
			if err != nil || n < 0 || 2+n > len(args) {
				return growAdd, nil, 0 // Redis answers the error
			}
			return growReplace, args[2 : 2+n], sum(args[2+n:]...)
		}
		// Other scripts are read-only (scripts.go).
	default:
		if adding[name] {
			return growAdd, nil, 0
		}
	}
	return growNone, nil, 0
}

// quotaCheck is run before c, on conn (t's user). If t's writes are
// refused, refusal is the error reply; otherwise done is to be called with
// the command's outcome, and updates the estimate. err is a failure to
// reach Redis.
func (t *tenant) quotaCheck(conn redis.Conn, c *command, in int) (refusal *redis.Error, done func(error), err error) {
	kind, keys, size := growthOf(c)
	if kind == growNone || t.g.backend != nil { // not measured on a cluster hub: see measureMemory
		return nil, func(error) {}, nil
	}
	u, limit := t.usage, t.cfg.Limits.MaxMemory
	// What may grow is reserved before it is judged, so that requests
	// running at once each see the others' (a check and then an add
	// would let a window of them pass the quota together); a refusal or
	// a failure gives it back.
	reserved := int64(in)
	if kind == growDelete {
		reserved = 0
	}
	u.delta.Add(reserved)
	est := u.estimate()
	over := limit > 0 && est > limit
	// What a delete frees, and near the quota what a replacing write
	// frees, is asked of the hub, so that the estimate follows the tenant
	// back under.
	near := limit > 0 && est > limit-limit/4
	// staged: the part of before held by staging keys, which a replacing
	// script renames into place: their bytes stay the tenant's.
	var before, staged int64
	if near && kind == growReplace || limit > 0 && kind == growDelete {
		if before, staged, err = memoryOf(conn, keys); err != nil {
			u.delta.Add(-reserved)
			return nil, nil, err
		}
	}
	if over && (kind == growAdd || kind == growReplace && size > before) {
		u.delta.Add(-reserved)
		e := redis.Error(fmt.Sprintf("ERR gateway: over the tenant's max_memory (%d bytes; its keys hold about %d): delete keys to write again", limit, est-reserved))
		return &e, nil, nil
	}
	if kind == growDelete {
		return nil, func(err error) {
			if err == nil {
				u.delta.Add(-before)
			}
		}, nil
	}
	grown := reserved
	if near && kind == growReplace {
		grown = size - (before - staged)
		u.delta.Add(grown - reserved)
	}
	return nil, func(err error) {
		if err != nil {
			u.delta.Add(-grown)
		}
	}, nil
}

// memoryOf is the sum of MEMORY USAGE of keys, asked on conn, and the part
// of it held by the link's staging keys.
func memoryOf(conn redis.Conn, keys [][]byte) (total, staged int64, err error) {
	for _, k := range keys {
		conn.Send("MEMORY", "USAGE", k)
	}
	if err := conn.Flush(); err != nil {
		return 0, 0, err
	}
	var first error
	for _, k := range keys {
		v, err := redis.Int64(conn.Receive())
		if err != nil && err != redis.ErrNil && first == nil {
			first = err
		}
		total += v
		if bytes.Contains(k, []byte(linkStagingMark)) {
			staged += v
		}
	}
	return total, staged, passRedisError(first)
}

// measureMemory walks the hub's keyspace every memory_scan_interval until
// ctx ends or the gateway closes, and puts each tenant's total in its
// usage.
//
// On a Redis Cluster hub the walk would have to run on every master; it
// is not built, so max_memory is not enforced there, and the gateway says
// so at start.
func (g *Gateway) measureMemory(ctx context.Context) {
	if g.backend != nil {
		for _, t := range g.state.Load().byName {
			if t.cfg.Limits.MaxMemory > 0 {
				g.log.Warn().Str("tenant", t.cfg.Name).Msg("max_memory is not enforced on a Redis Cluster hub")
			}
		}
		return
	}
	for {
		start := time.Now()
		if err := g.walkMemory(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn().Err(err).Msg("memory of the tenants not measured (will retry)")
		} else if err == nil {
			g.quota.walks.Inc()
			g.quota.walkDur.Set(time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-g.done:
			return
		case <-time.After(g.cfg.Quota.Interval):
		}
	}
}

// walkMemory is one walk: every tenant's total is replaced by what it
// finds, plus what the tenant wrote during the walk.
func (g *Gateway) walkMemory(ctx context.Context) error {
	type counted struct {
		t     *tenant
		total int64
	}
	st := g.state.Load()
	var ts []*counted
	for _, t := range st.byName {
		t.usage.carry.Add(t.usage.delta.Swap(0))
		ts = append(ts, &counted{t: t})
	}
	owner := func(key []byte) *counted {
		for _, c := range ts {
			for _, ns := range c.t.cfg.Namespaces {
				if len(key) >= len(ns) && string(key[:len(ns)]) == ns {
					return c
				}
			}
		}
		return nil
	}
	pace := time.Duration(float64(scanStep) / float64(g.cfg.Quota.KeysPerSecond) * float64(time.Second))
	conn, err := g.admin.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	cursor := "0"
	for {
		step := time.Now()
		v, err := redis.Values(doRetryBusy(ctx, conn, "SCAN", cursor, "COUNT", scanStep))
		if err != nil {
			return err
		}
		if len(v) != 2 {
			return fmt.Errorf("SCAN: a reply of %d elements", len(v))
		}
		cursor, _ = redis.String(v[0], nil)
		keys, _ := redis.ByteSlices(v[1], nil)
		var owners []*counted
		for _, k := range keys {
			if c := owner(k); c != nil {
				conn.Send("MEMORY", "USAGE", k)
				owners = append(owners, c)
			}
		}
		if len(owners) > 0 {
			if err := conn.Flush(); err != nil {
				return err
			}
			for _, c := range owners {
				n, err := redis.Int64(conn.Receive())
				if err != nil && err != redis.ErrNil && passRedisError(err) != nil {
					return err
				}
				c.total += n
			}
		}
		if cursor == "0" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.done:
			return ctx.Err()
		case <-time.After(pace - time.Since(step)):
		}
	}
	for _, c := range ts {
		u := c.t.usage
		u.measured.Store(c.total)
		u.carry.Store(0)
		u.walked.Store(true)
	}
	return nil
}

// quotaCollector exports each tenant's estimate and quota.
type quotaCollector struct{ g *Gateway }

var (
	memDesc   = prometheus.NewDesc("redisrepl_gateway_tenant_memory_bytes", "Estimate of the memory the tenant's keys hold on the hub.", []string{"tenant"}, nil)
	quotaDesc = prometheus.NewDesc("redisrepl_gateway_tenant_memory_quota_bytes", "The tenant's max_memory (absent: none).", []string{"tenant"}, nil)
)

func (q quotaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- memDesc; ch <- quotaDesc }

func (q quotaCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range q.g.state.Load().byName {
		if t.usage.walked.Load() {
			ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(t.usage.estimate()), t.cfg.Name)
		}
		if t.cfg.Limits.MaxMemory > 0 {
			ch <- prometheus.MustNewConstMetric(quotaDesc, prometheus.GaugeValue, float64(t.cfg.Limits.MaxMemory), t.cfg.Name)
		}
	}
}

// registerQuota adds the quota's metrics to reg.
func (g *Gateway) registerQuota(reg *prometheus.Registry) {
	g.quota.walks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "redisrepl_gateway_memory_walks_total", Help: "Walks of the hub's keyspace measuring the tenants' memory, completed.",
	})
	g.quota.walkDur = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "redisrepl_gateway_memory_walk_seconds", Help: "Duration of the last complete walk measuring the tenants' memory.",
	})
	reg.MustRegister(g.quota.walks, g.quota.walkDur, quotaCollector{g})
}
