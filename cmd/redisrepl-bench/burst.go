package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Burst: N distinct keys (~100-byte values) written locally as fast as a
// pipelined redigo connection goes, while a live link runs; keys/s from the
// first write until the remote's DBSIZE (polled every 5 ms) reaches N.
// Compared with the ceilings of the same run (targets: ≥ 10× single
// SET per request, ≥ 0.3× MSET of 100 keys per request, 8 connections).
//
// Both sides are flushed and a fresh link started (and waited live) before
// each round; its start is not measured.

const (
	burstTargetSingle = 10.0
	burstTargetMset   = 0.3
	burstTargetRSSMB  = 40.0 // peak RSS of the process during a 20k burst
)

func runBurst(ctx context.Context, b *bench) error {
	if err := b.needCeilings(ctx); err != nil {
		return err
	}
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()

	sizes := []int{20_000, 200_000}
	if b.quick {
		sizes = sizes[:1]
	}
	s := series{}
	for round := range b.rounds {
		for _, n := range sizes {
			r, err := burstOnce(ctx, b, hub, local, remote, n)
			if err != nil {
				return fmt.Errorf("burst of %d: %w", n, err)
			}
			k := kn(n)
			s.add(k, r.keysPerS)
			s.add(k+"/write", r.writeKeysPerS)
			s.add(k+"/reqs", float64(r.requests))
			s.add(k+"/kpr", float64(r.keysToRemote)/max(float64(r.requests), 1))
			s.add(k+"/lost", float64(n-int(r.events)))
			s.add(k+"/resyncs", float64(r.resyncs))
			s.add(k+"/complete", boolf(r.complete))
			s.add(k+"/req_p50", r.reqP50)
			s.add(k+"/req_p99", r.reqP99)
			s.add(k+"/peak_rss", float64(r.peakRSS)/(1<<20))
			r.cpu.addPerKey(s, k+"/", n)
			progress("round %d burst%s: %.0f keys/s (%d requests, %d keys written, complete=%v)",
				round+1, k, r.keysPerS, r.requests, r.keysToRemote, r.complete)
		}
	}
	for _, n := range sizes {
		k := kn(n)
		med := s.med(k)
		vsSingle, vsMset := med/b.ceilSet8, med/b.ceilMset8
		kv := append(s.headline("keys_per_s", k),
			"vs_single_set", ratio(vsSingle), "vs_mset100", ratio(vsMset),
			"target", fmt.Sprintf(">=%gx,>=%gx", burstTargetSingle, burstTargetMset),
			"pass", yesNo(vsSingle >= burstTargetSingle && vsMset >= burstTargetMset),
			"local_write_keys_per_s", s.med(k+"/write"),
			"remote_requests", s.med(k+"/reqs"),
			"keys_per_request", s.med(k+"/kpr"),
			"request_p50_ms_le", s.med(k+"/req_p50"),
			"request_p99_ms_le", s.med(k+"/req_p99"),
			"events_missed", s.med(k+"/lost"),
			"resyncs_during", s.med(k+"/resyncs"),
			"complete_rounds", fmt.Sprintf("%d/%d", int(sum(s[k+"/complete"])), len(s[k+"/complete"])))
		kv = append(kv, "peak_rss_mb", s.med(k+"/peak_rss"))
		if n == 20_000 {
			kv = append(kv, "target_peak_rss_mb", fmt.Sprintf("<=%g", burstTargetRSSMB),
				"pass_rss", yesNo(s.med(k+"/peak_rss") <= burstTargetRSSMB))
		}
		kv = append(kv, cpuFields(s, k+"/")...)
		b.emit("burst"+k, append(kv, "rounds", b.rounds)...)
	}
	return nil
}

type burstResult struct {
	keysPerS, writeKeysPerS float64
	requests, keysToRemote  int64
	events, resyncs         int64
	complete                bool
	reqP50, reqP99          float64 // ms, bucket upper bounds
	peakRSS                 int64   // bytes, of this process (link and writer)
	cpu                     cpuTimes
}

func burstOnce(ctx context.Context, b *bench, hub *webdistest.Hub, local, remote redis.Conn, n int) (*burstResult, error) {
	return burstWith(ctx, b, hub, linkConfig(hub, "burst:"), local, remote, n)
}

// burstWith is burstOnce with a link of cfg (namespace "burst:"): through
// a delaying proxy, say (wan.go).
func burstWith(ctx context.Context, b *bench, hub *webdistest.Hub, cfg config.Link, local, remote redis.Conn, n int) (*burstResult, error) {
	return burstOf(ctx, b, hub, cfg, local, remote, n, func(int) []byte { return value100 })
}

// burstOf is burstWith of the values val gives.
func burstOf(ctx context.Context, b *bench, hub *webdistest.Hub, cfg config.Link, local, remote redis.Conn, n int, val func(int) []byte) (*burstResult, error) {
	if err := flush(local, remote); err != nil {
		return nil, err
	}
	l, err := b.startLink(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	resetPeakRSS()
	reqs0, keys0 := l.Stats.RemoteRequests.Load(), l.Stats.KeysToRemote.Load()
	ev0, rs0 := l.Stats.EventsLocal.Load(), l.Stats.Resyncs.Load()
	req0 := snap(l.Stats.RemoteLatency)
	cpu0 := cpuSnapshot(hub)

	timeout := 20*time.Second + time.Duration(n)*time.Second/4000
	start := time.Now()
	type polled struct {
		at   time.Time
		seen int
		err  error
	}
	res := make(chan polled, 1)
	go func() {
		seen := 0
		err := waitUntil(ctx, timeout, 5*time.Millisecond, func() bool {
			var e error
			if seen, e = dbsize(remote); e != nil {
				return true
			}
			return seen >= n
		})
		res <- polled{time.Now(), seen, err}
	}()
	werr := pipelineSet(ctx, local, n, func(i int) []byte { return numKey("burst:", i) }, val)
	wrote := time.Since(start)
	p := <-res
	if werr != nil {
		return nil, werr
	}
	if p.err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	took := p.at.Sub(start).Seconds()
	r := &burstResult{
		keysPerS:      float64(p.seen) / took,
		writeKeysPerS: float64(n) / wrote.Seconds(),
		requests:      l.Stats.RemoteRequests.Load() - reqs0,
		keysToRemote:  l.Stats.KeysToRemote.Load() - keys0,
		events:        l.Stats.EventsLocal.Load() - ev0,
		resyncs:       l.Stats.Resyncs.Load() - rs0,
		complete:      p.seen >= n,
	}
	r.cpu = cpuSnapshot(hub).since(cpu0)
	_, r.peakRSS = vm()
	req1 := snap(l.Stats.RemoteLatency)
	r.reqP50, r.reqP99 = req1.quantileSince(req0, 0.5), req1.quantileSince(req0, 0.99)
	if !r.complete {
		progress("burst of %d: only %d keys on the remote after %v (link state %s, pending %d, last error %q)",
			n, p.seen, timeout, l.State(), l.Pending(), l.LastError())
	}
	return r, nil
}

// needCeilings measures the ceilings unless this run has them: ratios are
// taken against the ceilings of the same run.
func (b *bench) needCeilings(ctx context.Context) error {
	if b.ceilSet8 != 0 && b.ceilMset8 != 0 {
		return nil
	}
	progress("ratios are taken against the ceilings of the same run: measuring them first")
	var err error
	pprof.Do(ctx, pprof.Labels("scenario", "ceilings"), func(ctx context.Context) { err = runCeilings(ctx, b) })
	if err != nil {
		return fmt.Errorf("ceilings: %w", err)
	}
	return nil
}

// resetPeakRSS returns free memory to the OS and resets VmHWM to the
// current RSS (Linux: "5" to /proc/self/clear_refs), so that vm's hwm is
// the peak from now on, not of an earlier scenario.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		progress("peak RSS not reset (%v): peak_rss_mb is since the start", err)
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sum(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}
