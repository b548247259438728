package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Hot keys: U updates (50,000) to 100 keys, pipelined as fast as possible,
// update i writing "hot:<i mod 100>" = "u<i>". The link should coalesce:
// the target is ≤ 0.05 remote writes per update and the remote quiet
// within 1 s after the writer stops.
//
// Remote writes are counted on the remote redis-server itself, before and
// after, with nothing else writing there:
//
//   - INFO commandstats: commands run inside scripts are counted too. The link
//     copies a string key with its apply script as a SET inside one EVALSHA
//     that may carry many keys, or, for a batch of strings without expiry,
//     with one MSET: "set" calls are keys written by scripts, "evalsha" and
//     "mset" calls write requests (plus the link's rare read probes).
//   - INFO persistence rdb_changes_since_last_save: a SET or DEL is one
//     change, an MSET one per key. The keys MSET wrote are the changes not
//     made by SET or DEL, so remote_key_writes = set + (changes - set - del),
//     and writes_per_update is that per update.
//
// The link's own view, Stats.KeysToRemote per update, is printed as well.
//
// Timing, from the moment the writer got its last reply: final_ms is when
// the remote first holds all 100 final values (MGET polled every 5 ms),
// quiet_ms when the remote's change counter last moved (watched until it
// stood still for 1.5 s).

const (
	hotKeys          = 100
	hotTargetPerUpd  = 0.05
	hotTargetQuietMs = 1000.0
)

func runHotkeys(ctx context.Context, b *bench) error {
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()

	updates := 50_000
	if b.quick {
		updates = 10_000
	}
	s := series{}
	for round := range b.rounds {
		if err := flush(local, remote); err != nil {
			return err
		}
		l, err := b.startLink(ctx, linkConfig(hub, "hot:"), true)
		if err != nil {
			return err
		}
		r, err := hotOnce(ctx, local, remote, l, updates)
		l.stop()
		if err != nil {
			return err
		}
		for k, v := range r {
			s.add(k, v)
		}
		progress("round %d hotkeys: %.0f key writes on the remote (%.4f per update), final after %.0f ms, quiet after %.0f ms",
			round+1, r["writes"], r["writes"]/float64(updates), r["final_ms"], r["quiet_ms"])
	}
	perUpd := s.med("writes") / float64(updates)
	quiet := s.med("quiet_ms")
	b.emit("hotkeys"+kn(updates), "writes_per_update", perUpd,
		"writes_per_update_min", minOf(s["writes"])/float64(updates), "writes_per_update_max", maxOf(s["writes"])/float64(updates),
		"target_per_update", hotTargetPerUpd,
		"final_ms", s.med("final_ms"),
		"quiet_ms", quiet, "quiet_ms_max", maxOf(s["quiet_ms"]),
		"target_quiet_ms", hotTargetQuietMs,
		"pass", yesNo(perUpd <= hotTargetPerUpd && quiet <= hotTargetQuietMs),
		"updates", updates, "keys", hotKeys,
		"remote_key_writes", s.med("writes"),
		"remote_evalsha", s.med("evalsha"),
		"remote_mset", s.med("mset"),
		"remote_del", s.med("del"),
		"remote_rdb_changes", s.med("changes"),
		"link_keys_to_remote", s.med("link_keys"),
		"link_keys_per_update", s.med("link_keys")/float64(updates),
		"link_requests", s.med("link_reqs"),
		"link_skipped", s.med("link_skipped"),
		"write_ms", s.med("write_ms"),
		"rounds", b.rounds)
	return nil
}

func hotOnce(ctx context.Context, local, remote redis.Conn, l *runningLink, updates int) (map[string]float64, error) {
	// Let the start's resync settle so that only the updates are counted.
	if err := waitUntil(ctx, 10*time.Second, 5*time.Millisecond, func() bool { return l.Pending() == 0 }); err != nil {
		return nil, err
	}
	calls0, err := commandCalls(remote)
	if err != nil {
		return nil, err
	}
	ch0, err := rdbChanges(remote)
	if err != nil {
		return nil, err
	}
	keys0, reqs0, skip0 := l.Stats.KeysToRemote.Load(), l.Stats.RemoteRequests.Load(), l.Stats.KeysSkipped.Load()

	key := func(i int) []byte { return numKey("hot:", i%hotKeys) }
	val := func(i int) []byte { return numKey("u", i) }
	start := time.Now()
	if err := pipelineSet(ctx, local, updates, key, val); err != nil {
		return nil, err
	}
	stopped := time.Now()

	// The final value of key j is that of the last update i with i%100 == j.
	want := make([][]byte, hotKeys)
	mget := []any{}
	for i := max(0, updates-hotKeys); i < updates; i++ {
		want[i%hotKeys] = val(i)
	}
	for j := range hotKeys {
		mget = append(mget, key(j))
	}
	last, err := rdbChanges(remote)
	if err != nil {
		return nil, err
	}
	lastChange, finalAt := stopped, time.Time{}
	const quietWindow = 1500 * time.Millisecond
	err = waitUntil(ctx, 20*time.Second, 5*time.Millisecond, func() bool {
		now := time.Now()
		if ch, err := rdbChanges(remote); err == nil && ch != last {
			last, lastChange = ch, now
		}
		if finalAt.IsZero() {
			vs, err := redis.ByteSlices(remote.Do("MGET", mget...))
			if err == nil && equalAll(vs, want) {
				finalAt = now
			}
		}
		return !finalAt.IsZero() && now.Sub(lastChange) >= quietWindow
	})
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if finalAt.IsZero() {
		return nil, fmt.Errorf("the remote did not hold the final values within 20s (link state %s, pending %d, last error %q)",
			l.State(), l.Pending(), l.LastError())
	}
	calls1, err := commandCalls(remote)
	if err != nil {
		return nil, err
	}
	ch1, err := rdbChanges(remote)
	if err != nil {
		return nil, err
	}
	set, del := float64(calls1["set"]-calls0["set"]), float64(calls1["del"]-calls0["del"])
	return map[string]float64{
		"writes":       set + max(0, float64(ch1-ch0)-set-del),
		"set":          set,
		"del":          del,
		"evalsha":      float64(calls1["evalsha"] - calls0["evalsha"] + calls1["eval"] - calls0["eval"]),
		"mset":         float64(calls1["mset"] - calls0["mset"]),
		"changes":      float64(ch1 - ch0),
		"link_keys":    float64(l.Stats.KeysToRemote.Load() - keys0),
		"link_reqs":    float64(l.Stats.RemoteRequests.Load() - reqs0),
		"link_skipped": float64(l.Stats.KeysSkipped.Load() - skip0),
		"final_ms":     float64(finalAt.Sub(stopped)) / 1e6,
		"quiet_ms":     float64(lastChange.Sub(stopped)) / 1e6,
		"write_ms":     float64(stopped.Sub(start)) / 1e6,
	}, nil
}

func equalAll(got, want [][]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
