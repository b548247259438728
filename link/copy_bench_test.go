package link

import (
	"context"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// BenchmarkCopyBatch is the link's own cost of copying one batch of dirty
// keys (100-byte strings) from a real local Redis to a real hub through
// nginx+Webdis: the local read, the decision and the remote write, as a
// worker does it. It reports per key: wall time of one worker (ns/key) and
// allocations in this process (allocs/key, B/key). The figures to compare
// before and after a change of the hot path come from here:
//
//	go test ./link -run '^$' -bench CopyBatch -benchtime 200x
func BenchmarkCopyBatch(b *testing.B) {
	for _, dir := range []config.Direction{config.Push, config.Both} {
		b.Run(string(dir), func(b *testing.B) { benchCopyBatch(b, dir) })
	}
}

func benchCopyBatch(b *testing.B, dir config.Direction) {
	const n = config.DefaultBatchKeys
	hub := webdistest.New(b, webdistest.Options{})
	local, err := hub.Local()
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("bench:" + strconv.Itoa(i))
		if _, err := local.Do("SET", keys[i], value); err != nil {
			b.Fatal(err)
		}
	}
	cfg := config.Link{
		Name: "bench", Local: hub.LocalAddr, LocalAddr: hub.LocalAddr, Namespace: "bench:",
		Remote: hub.URL, Cert: hub.Cert, Key: hub.Key, CA: hub.CA, Direction: dir,
		StateFile: b.TempDir() + "/bench.state",
	}.WithDefaults()
	l, err := New(cfg, zerolog.New(io.Discard).Level(zerolog.InfoLevel)) // as a service runs
	if err != nil {
		b.Fatal(err)
	}
	defer l.persist.lock.Unlock()
	defer l.pool.Close()
	defer l.client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Every round changes the values, so that each copy is a real write
	// (an unchanged key is skipped by the no-op check).
	round := 0
	touch := func() {
		round++
		for _, k := range keys {
			local.Send("SETRANGE", k, 0, strconv.Itoa(round))
		}
		if _, err := local.Do(""); err != nil {
			b.Fatal(err)
		}
	}
	copyOnce := func() {
		bt := &batch{keys: make([]string, n), whys: make([]uint8, n), since: make([]int64, n)}
		for i, k := range keys {
			bt.keys[i], bt.whys[i] = string(k), changedLocal
		}
		if err := l.copyBatch(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	touch()
	copyOnce() // warm: scripts loaded, connections open
	b.ReportAllocs()
	b.ResetTimer()
	var allocs, bytes uint64
	for range b.N {
		b.StopTimer()
		touch()
		before := memStats()
		b.StartTimer()
		copyOnce()
		b.StopTimer()
		after := memStats()
		allocs += after.Mallocs - before.Mallocs
		bytes += after.TotalAlloc - before.TotalAlloc
		b.StartTimer()
	}
	b.StopTimer()
	if got := l.Stats.KeysToRemote.Load(); got < int64(b.N*n) {
		b.Fatalf("%d keys written to the hub, want %d", got, b.N*n)
	}
	keysDone := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/keysDone, "ns/key")
	b.ReportMetric(float64(allocs)/keysDone, "allocs/key")
	b.ReportMetric(float64(bytes)/keysDone, "B/key")
}

func memStats() runtime.MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
