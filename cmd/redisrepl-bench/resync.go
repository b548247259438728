package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Resync: N keys (100,000, ~100-byte values) written directly on both sides
// before the link starts, every 100th with a different value on the remote
// (1%). Then the link starts; measured from just before link.Run until it
// is live, has written at least the differing keys (Stats.KeysToRemote) and
// has nothing pending; then checked: the remote's DBSIZE is N and every
// differing key holds the local value.
//
// resync<N>_empty is the same with an empty remote (a first start: every
// key is copied), for reference.

func runResync(ctx context.Context, b *bench) error {
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()

	n := 100_000
	if b.quick {
		n = 20_000
	}
	variants := []struct {
		name        string
		differEvery int // every k-th key differs; 1 = the remote is empty
	}{
		{"resync" + kn(n), 100},
		{"resync" + kn(n) + "_empty", 1},
	}
	s := series{}
	for round := range b.rounds {
		for _, v := range variants {
			r, err := resyncOnce(ctx, b, hub, local, remote, n, v.differEvery)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			for k, x := range r {
				s.add(v.name+"/"+k, x)
			}
			progress("round %d %s: %.2f s, %.0f requests, %.0f keys written", round+1, v.name, r["secs"], r["reqs"], r["written"])
		}
	}
	for _, v := range variants {
		k := v.name + "/"
		b.emit(v.name, append(s.headline("secs", k+"secs"),
			"keys", n, "differing", s.med(k+"differing"),
			"keys_compared_per_s", float64(n)/s.med(k+"secs"),
			"remote_requests", s.med(k+"reqs"),
			"keys_written", s.med(k+"written"),
			"keys_repaired", s.med(k+"repaired"),
			"keys_skipped", s.med(k+"skipped"),
			"resyncs", s.med(k+"resyncs"),
			"rounds", b.rounds)...)
	}
	return nil
}

func resyncOnce(ctx context.Context, b *bench, hub *webdistest.Hub, local, remote redis.Conn, n, differEvery int) (map[string]float64, error) {
	if err := flush(local, remote); err != nil {
		return nil, err
	}
	key := func(i int) []byte { return numKey("rs:", i) }
	if err := pipelineSet(ctx, local, n, key, func(int) []byte { return value100 }); err != nil {
		return nil, err
	}
	other := bytes.Repeat([]byte("w"), len(value100))
	var differing []any
	if differEvery > 1 {
		err := pipelineSet(ctx, remote, n, key, func(i int) []byte {
			if i%differEvery == 0 {
				return other
			}
			return value100
		})
		if err != nil {
			return nil, err
		}
	}
	for i := 0; i < n; i += differEvery {
		differing = append(differing, key(i))
	}

	l, err := b.startLink(ctx, linkConfig(hub, "rs:"), false)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	err = waitUntil(ctx, 120*time.Second, 5*time.Millisecond, func() bool {
		return l.State() == link.Live && l.Stats.KeysToRemote.Load() >= int64(len(differing)) && l.Pending() == 0
	})
	took := time.Since(l.started)
	if err != nil {
		return nil, fmt.Errorf("%w (state %s, %d keys written, %d pending, last error %q)",
			err, l.State(), l.Stats.KeysToRemote.Load(), l.Pending(), l.LastError())
	}
	size, err := dbsize(remote)
	if err != nil {
		return nil, err
	}
	if size != n {
		return nil, fmt.Errorf("the remote holds %d keys, not %d", size, n)
	}
	for i := 0; i < len(differing); i += 1000 {
		vs, err := redis.ByteSlices(remote.Do("MGET", differing[i:min(i+1000, len(differing))]...))
		if err != nil {
			return nil, err
		}
		for j, v := range vs {
			if !bytes.Equal(v, value100) {
				return nil, fmt.Errorf("key %s on the remote is %.20q, not the local value", differing[i+j], v)
			}
		}
	}
	return map[string]float64{
		"secs":      took.Seconds(),
		"differing": float64(len(differing)),
		"reqs":      float64(l.Stats.RemoteRequests.Load()),
		"written":   float64(l.Stats.KeysToRemote.Load()),
		"repaired":  float64(l.Stats.Repaired.Load()),
		"skipped":   float64(l.Stats.KeysSkipped.Load()),
		"resyncs":   float64(l.Stats.Resyncs.Load()),
	}, nil
}
