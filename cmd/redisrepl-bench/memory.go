package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Memory: the remote is down (nginx stopped), so nothing can be copied and
// every changed key stays pending. N distinct keys (1,000,000) of fixed
// length are written locally (pipelined); once the link has read all their
// events, the growth of this process is measured against a baseline taken
// after the link started and subscribed:
//
//   - heap: runtime MemStats.HeapInuse after a GC, before vs after;
//   - rss: /proc/self/status VmRSS, after a GC (the baseline also after
//     debug.FreeOSMemory, so that earlier rounds' freed pages do not hide
//     the growth);
//   - peak: VmHWM (peak RSS) growth, reset through /proc/self/clear_refs
//     before the writes when the kernel allows it. It includes the garbage
//     of the bench's own writer.
//
// bytes_per_key divides by N; key_len is the key length used (target:
// ≤ 200 bytes per key plus the key).

const memTargetPerKey = 200.0

func runMemory(ctx context.Context, b *bench) error {
	hub, err := b.startHub(ctx, defaultHub)
	if err != nil {
		return err
	}
	defer b.closeHub(hub)
	if err := hub.StopNginx(); err != nil {
		return err
	}
	local, err := hub.Local()
	if err != nil {
		return err
	}
	defer local.Close()

	n := 1_000_000
	if b.quick {
		n = 200_000
	}
	const prefix = "mem:"
	width := len(strconv.Itoa(n - 1))
	keyLen := len(prefix) + width
	s := series{}
	for round := range b.rounds {
		r, err := memoryOnce(ctx, b, hub, local, prefix, width, n)
		if err != nil {
			return err
		}
		for k, v := range r {
			s.add(k, v)
		}
		progress("round %d memory: heap +%.0f B/key, rss +%.0f B/key, peak +%.0f B/key, %.0f pending, %.0f events missed",
			round+1, r["heap"]/float64(n), r["rss"]/float64(n), r["peak"]/float64(n), r["pending"], r["missed"])
	}
	perKey := func(k string) []float64 {
		out := make([]float64, len(s[k]))
		for i, v := range s[k] {
			out[i] = v / float64(n)
		}
		return out
	}
	s["heap/key"], s["rss/key"], s["peak/key"] = perKey("heap"), perKey("rss"), perKey("peak")
	heap := s.med("heap/key")
	b.emit("memory"+kn(n), append(s.headline("heap_bytes_per_key", "heap/key"),
		"rss_bytes_per_key", s.med("rss/key"),
		"peak_rss_bytes_per_key", s.med("peak/key"),
		"key_len", keyLen,
		"target", fmt.Sprintf("<=%g+key_len", memTargetPerKey),
		"pass", yesNo(heap <= memTargetPerKey+float64(keyLen) && s.med("missed") == 0),
		"heap_mb", s.med("heap")/1e6, "rss_mb", s.med("rss")/1e6, "peak_rss_mb", s.med("peak")/1e6,
		"pending", s.med("pending"), "events_missed", s.med("missed"),
		"resyncs_requested", s.med("resyncs"),
		"keys", n, "rounds", b.rounds)...)
	return nil
}

func memoryOnce(ctx context.Context, b *bench, hub *webdistest.Hub, local redis.Conn, prefix string, width, n int) (map[string]float64, error) {
	if err := flush(local); err != nil {
		return nil, err
	}
	cfg := linkConfig(hub, prefix)
	cfg.MaxDirtyKeys = 2 * n
	l, err := b.startLink(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	// Subscribed once a probe key's event arrives (the link never gets
	// live: the remote is down).
	probe := prefix + "probe"
	err = waitUntil(ctx, 15*time.Second, 50*time.Millisecond, func() bool {
		_, _ = local.Do("SET", probe, "x")
		return l.Stats.EventsLocal.Load() > 0
	})
	if err != nil {
		return nil, fmt.Errorf("the link did not subscribe: %w (state %s, last error %q)", err, l.State(), l.LastError())
	}
	time.Sleep(100 * time.Millisecond) // the probe's last events
	ev0, rs0 := l.Stats.EventsLocal.Load(), l.Stats.Resyncs.Load()

	heap0, rss0 := measureMem(true)
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	_, hwm0 := vm()

	key := func(i int) []byte {
		k := make([]byte, 0, len(prefix)+width)
		k = append(k, prefix...)
		d := strconv.Itoa(i)
		for range width - len(d) {
			k = append(k, '0')
		}
		return append(k, d...)
	}
	if err := pipelineSet(ctx, local, n, key, func(int) []byte { return []byte("x") }); err != nil {
		return nil, err
	}
	// Wait for every event, or for the count to stop moving for 3 s.
	last, lastMove := int64(-1), time.Now()
	_ = waitUntil(ctx, 60*time.Second, 20*time.Millisecond, func() bool {
		ev := l.Stats.EventsLocal.Load() - ev0
		if ev != last {
			last, lastMove = ev, time.Now()
		}
		return ev >= int64(n) || time.Since(lastMove) > 3*time.Second
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	heap1, rss1 := measureMem(false)
	_, hwm1 := vm()
	peak := float64(hwm1 - hwm0)
	if !hwmReset {
		peak = float64(hwm1 - rss0) // the peak of the whole process so far
	}
	return map[string]float64{
		"heap":    float64(int64(heap1) - int64(heap0)),
		"rss":     float64(rss1 - rss0),
		"peak":    peak,
		"pending": float64(l.Pending()),
		"missed":  float64(int64(n) - (l.Stats.EventsLocal.Load() - ev0)),
		"resyncs": float64(l.Stats.Resyncs.Load() - rs0),
	}, nil
}

// measureMem collects garbage (and with release, returns free memory to the
// OS) and returns HeapInuse and VmRSS in bytes.
func measureMem(release bool) (heap uint64, rss int64) {
	runtime.GC()
	runtime.GC()
	if release {
		debug.FreeOSMemory()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss, _ = vm()
	return m.HeapInuse, rss
}

// vm returns VmRSS and VmHWM of this process in bytes (0 if unknown).
func vm() (rss, hwm int64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch name {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
