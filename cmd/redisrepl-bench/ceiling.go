package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Ceilings: what a plain load generator pushes through the same nginx →
// webdis → redis with webdis.Client (the link's own client and TLS setup),
// distinct keys with ~100-byte values, as fast as it can:
//
//	ceiling_set_cN      one SET per request, N connections
//	ceiling_mset100_cN  one MSET of 100 keys per request, N connections
//	ceiling_mset10_c8   one MSET of 10 keys (~1.2 KB bodies), for reference
//
// N = 8 is the link's default workers; N = 1 is for reference. Each
// measurement runs `dur` after a short warm-up (TLS handshakes); the remote
// is flushed after each. They run interleaved, round after round, so that a
// noisy neighbour hurts them alike. The cpu_us_per_key fields say where the
// CPU went (cpu.go), warm-up included.
//
// nginx_body_latency is the median time of one SET request (1 connection,
// sequential) by body size. It shows at once a hub whose latency jumps with
// the body size: webdistest's nginx (no client_body_buffer_size) buffers a
// body over ~11 KB in a temporary file and then each such request takes
// ~44 ms; an MSET of 100 keys with ~100-byte values is a ~11.5 KB body.

type ceiling struct {
	name   string
	conns  int
	perReq int
}

var ceilingRuns = []ceiling{
	{"ceiling_set_c1", 1, 1},
	{"ceiling_set_c8", 8, 1},
	{"ceiling_mset10_c8", 8, 10},
	{"ceiling_mset100_c1", 1, 100},
	{"ceiling_mset100_c8", 8, 100},
}

func runCeilings(ctx context.Context, b *bench) error {
	hub, err := b.startHub(ctx, defaultHub)
	if err != nil {
		return err
	}
	defer b.closeHub(hub)
	remote, err := hub.Remote()
	if err != nil {
		return err
	}
	defer remote.Close()

	dur := 3 * time.Second
	if b.quick {
		dur = time.Second
	}
	s := series{}
	for round := range b.rounds {
		for _, c := range ceilingRuns {
			cpu0 := cpuSnapshot(hub)
			keys, reqs, all, secs, err := loadGen(ctx, hub, c.conns, c.perReq, dur)
			if err != nil {
				return err
			}
			cpuSnapshot(hub).since(cpu0).addPerKey(s, c.name+"/", int(all))
			s.add(c.name, float64(keys)/secs)
			s.add(c.name+"/req", float64(reqs)/secs)
			progress("round %d %s: %.0f keys/s", round+1, c.name, float64(keys)/secs)
			if err := flush(remote); err != nil {
				return err
			}
		}
	}
	for round := range b.rounds {
		lat, err := bodyLatency(ctx, hub)
		if err != nil {
			return err
		}
		for i, size := range bodySizes {
			s.add("body/"+kn(size), lat[i])
		}
		progress("round %d request ms by body size %v: %.3g", round+1, bodySizes, lat)
	}
	kv := []any{}
	for _, size := range bodySizes {
		kv = append(kv, "req_ms_"+bodyName(size), s.med("body/"+kn(size)))
	}
	b.emit("nginx_body_latency", append(kv, "conns", 1, "rounds", b.rounds)...)
	for _, c := range ceilingRuns {
		kv := append(s.headline("keys_per_s", c.name), "req_per_s", s.med(c.name+"/req"),
			"conns", c.conns, "keys_per_req", c.perReq, "secs", dur.Seconds())
		kv = append(kv, cpuFields(s, c.name+"/")...)
		b.emit(c.name, append(kv, "rounds", b.rounds)...)
	}
	b.ceilSet8 = s.med("ceiling_set_c8")
	b.ceilMset8 = s.med("ceiling_mset100_c8")
	return nil
}

// loadGen runs conns goroutines sending SET (perReq 1) or MSET of perReq
// keys through hub's nginx for dur, after 300 ms of warm-up, and returns the
// keys and requests done after the warm-up and the seconds they took, and
// all the keys written (warm-up included).
func loadGen(ctx context.Context, hub *webdistest.Hub, conns, perReq int, dur time.Duration) (keys, reqs, all int64, secs float64, err error) {
	client, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA, MaxConns: conns})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer client.Close()

	const warmup = 300 * time.Millisecond
	t0 := time.Now().Add(warmup)
	end := t0.Add(dur)
	var (
		seq       atomic.Int64
		nkeys     atomic.Int64
		nreqs     atomic.Int64
		errOnce   sync.Once
		firstErr  error
		wg        sync.WaitGroup
		cmdSET    = []byte("SET")
		cmdMSET   = []byte("MSET")
		keyPrefix = "ceil:"
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := make([][]byte, 0, 1+2*perReq)
			for ctx.Err() == nil && time.Now().Before(end) {
				base := int(seq.Add(int64(perReq))) - perReq
				args = args[:0]
				if perReq == 1 {
					args = append(args, cmdSET, numKey(keyPrefix, base), value100)
				} else {
					args = append(args, cmdMSET)
					for i := range perReq {
						args = append(args, numKey(keyPrefix, base+i), value100)
					}
				}
				if _, err := client.Do(ctx, args...); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if time.Now().After(t0) {
					nkeys.Add(int64(perReq))
					nreqs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, 0, 0, err
	}
	return nkeys.Load(), nreqs.Load(), seq.Load(), time.Since(t0).Seconds(), nil
}

// bodySizes are the request body sizes nginx_body_latency tries.
var bodySizes = []int{100, 10_000, 12_000, 64_000, 512_000}

func bodyName(size int) string {
	if size < 1000 {
		return fmt.Sprintf("%db", size)
	}
	return kn(size)
}

// bodyLatency returns the median ms of a SET request whose POST body has
// each of bodySizes bytes, through hub's nginx, on one connection.
func bodyLatency(ctx context.Context, hub *webdistest.Hub) ([]float64, error) {
	client, err := webdis.New(webdis.Options{URL: hub.URL, CertFile: hub.Cert, KeyFile: hub.Key, CAFile: hub.CA, MaxConns: 1})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	out := make([]float64, len(bodySizes))
	for i, size := range bodySizes {
		args := [][]byte{[]byte("SET"), []byte("body"), bytes.Repeat([]byte("v"), size-len("SET/body/"))}
		var ms []float64
		for j := range 16 {
			t := time.Now()
			if _, err := client.Do(ctx, args...); err != nil {
				return nil, err
			}
			if j > 0 { // the first may open a connection
				ms = append(ms, float64(time.Since(t))/1e6)
			}
		}
		out[i] = median(ms)
	}
	return out, nil
}
