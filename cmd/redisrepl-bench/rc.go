package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// rc: direction "both". First a probe: a link with direction both, live, and
// one key written on the remote redis-server directly must show up locally
// within 5 s; if not, the scenario prints "rc skipped reason=..." and stops.
// Then, per round: both sides flushed, a fresh link, N distinct keys (20,000,
// ~100-byte values) written on the REMOTE directly (pipelined); keys/s from
// the first write until the local DBSIZE (polled every 5 ms) reaches N.
// echo_writes is what the link wrote back to the remote meanwhile
// (Stats.KeysToRemote): the keys it brought must not travel back.

func runRC(ctx context.Context, b *bench) error {
	if err := b.needCeilings(ctx); err != nil {
		return err
	}
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()

	cfg := linkConfig(hub, "rc:")
	cfg.Direction = "both"
	if reason, err := rcProbe(ctx, b, cfg, local, remote); err != nil {
		return err
	} else if reason != "" {
		fmt.Fprintf(b.out, "rc skipped reason=%s\n", reason)
		return nil
	}

	n := 20_000
	if b.quick {
		n = 5_000
	}
	s := series{}
	for round := range b.rounds {
		r, err := rcOnce(ctx, b, hub, cfg, local, remote, n)
		if err != nil {
			return err
		}
		for k, v := range r {
			s.add(k, v)
		}
		progress("round %d rc%s: %.0f keys/s (complete=%v)", round+1, kn(n), r["kps"], r["complete"] == 1)
	}
	med := s.med("kps")
	kv := append(s.headline("keys_per_s", "kps"),
		"vs_single_set", ratio(med/b.ceilSet8), "vs_mset100", ratio(med/b.ceilMset8),
		"target", fmt.Sprintf(">=%gx,>=%gx", burstTargetSingle, burstTargetMset),
		"pass", yesNo(med/b.ceilSet8 >= burstTargetSingle && med/b.ceilMset8 >= burstTargetMset))
	kv = append(kv,
		"keys_to_local", s.med("to_local"),
		"events_remote", s.med("events"),
		"echo_writes", s.med("echo"),
		"keys_skipped", s.med("skipped"),
		"complete_rounds", fmt.Sprintf("%d/%d", int(sum(s["complete"])), len(s["complete"])))
	kv = append(kv, cpuFields(s, "")...)
	b.emit("rc"+kn(n), append(kv, "rounds", b.rounds)...)
	return nil
}

// rcProbe returns why direction both cannot be measured, "" if it can.
func rcProbe(ctx context.Context, b *bench, cfg config.Link, local, remote redis.Conn) (string, error) {
	if err := flush(local, remote); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "redisrepl-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cfg.StateFile = filepath.Join(dir, "probe.state")
	l, err := b.startLink(ctx, cfg, false)
	if err != nil {
		return "link.New_failed:" + quote(err.Error()), nil
	}
	defer l.stop()
	if err := waitUntil(ctx, 15*time.Second, 10*time.Millisecond, func() bool { return l.State() == link.Live }); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return fmt.Sprintf("direction_both_link_not_live_within_15s(state=%s,last_error=%q)", l.State(), l.LastError()), nil
	}
	if _, err := remote.Do("SET", "rc:probe", "x"); err != nil {
		return "", err
	}
	err = waitUntil(ctx, 5*time.Second, 10*time.Millisecond, func() bool {
		n, err := redis.Int(local.Do("EXISTS", "rc:probe"))
		return err == nil && n == 1
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return fmt.Sprintf("a_remote_write_did_not_reach_local_within_5s(events_remote=%d,keys_to_local=%d)",
			l.Stats.EventsRemote.Load(), l.Stats.KeysToLocal.Load()), nil
	}
	return "", nil
}

func rcOnce(ctx context.Context, b *bench, hub *webdistest.Hub, cfg config.Link, local, remote redis.Conn, n int) (map[string]float64, error) {
	if err := flush(local, remote); err != nil {
		return nil, err
	}
	// A fresh link: with the last round's sync state, both sides flushed
	// (no event) and rewritten with the same values would rightly look like
	// deletes on the local side.
	dir, err := os.MkdirTemp("", "redisrepl-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg.StateFile = filepath.Join(dir, "rc.state")
	l, err := b.startLink(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	toLocal0, ev0, echo0, skip0 := l.Stats.KeysToLocal.Load(), l.Stats.EventsRemote.Load(), l.Stats.KeysToRemote.Load(), l.Stats.KeysSkipped.Load()
	cpu0 := cpuSnapshot(hub)
	start := time.Now()
	if err := pipelineSet(ctx, remote, n, func(i int) []byte { return numKey("rc:", i) }, func(int) []byte { return value100 }); err != nil {
		return nil, err
	}
	seen := 0
	timeout := 20*time.Second + time.Duration(n)*time.Second/4000
	err = waitUntil(ctx, timeout, 5*time.Millisecond, func() bool {
		seen, _ = dbsize(local)
		return seen >= n
	})
	took := time.Since(start)
	cpu := cpuSnapshot(hub).since(cpu0)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if seen < n {
		progress("rc: only %d of %d keys local after %v (state %s, last error %q)", seen, n, timeout, l.State(), l.LastError())
	}
	// Echoes, if any, come right after: give them a moment.
	time.Sleep(500 * time.Millisecond)
	r := map[string]float64{
		"kps":      float64(seen) / took.Seconds(),
		"to_local": float64(l.Stats.KeysToLocal.Load() - toLocal0),
		"events":   float64(l.Stats.EventsRemote.Load() - ev0),
		"echo":     float64(l.Stats.KeysToRemote.Load() - echo0),
		"skipped":  float64(l.Stats.KeysSkipped.Load() - skip0),
		"complete": boolf(seen >= n),
	}
	s := series{}
	cpu.addPerKey(s, "", n)
	for k, v := range s {
		r[k] = v[0]
	}
	return r, nil
}
