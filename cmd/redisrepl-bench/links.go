package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Links: many push links in this one process, as the service runs them:
// one local Redis, one hub, N links, each its own namespace "l<i>:". For
// N in 1, 50 and 200, both sides are flushed and N fresh links started;
// once all are live and done with their first resync (plus linksSettle):
//
//   - copy_s: N × 1,000 keys written locally (pipelined, ~100-byte values,
//     link after link), from the first write until the hub's DBSIZE holds
//     them all; hub_conns_max: the most TCP connections of this process
//     established to the hub's front port meanwhile (sampled at every poll
//     of DBSIZE, from /proc/self/net/tcp: only sockets whose inode is one
//     of this process's fds);
//
// then, linksSettle later, with every link idle and holding its keys:
//
//   - idle_cpu_pct: user+system CPU of this process (getrusage) over the idle
//     window (30 s; 5 s with -quick, which the line says), as % of one core,
//     and hub_idle_cpu_pct: the hub's processes (redis, webdis, nginx or the
//     gateway) over the same window;
//   - hub_conns: the connections to the hub after the idle window;
//   - rss_mb: VmRSS of this process after a GC (the links, and the bench's
//     own few MB).
//
// Targets: 200 links idle under 2% of a core, under 64 connections to one
// hub, RSS under 150 MB.

const (
	linksTargetCPU   = 2.0  // % of a core, 200 links idle
	linksTargetConns = 64   // connections to one hub
	linksTargetRSS   = 150. // MB
	linksKeysEach    = 1000
	linksSettle      = 5 * time.Second
)

func runLinks(ctx context.Context, b *bench) error {
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()
	counts := []int{1, 50, 200}

	idle := 30 * time.Second
	if b.quick {
		idle = 5 * time.Second
	}
	for _, n := range counts {
		s := series{}
		for round := range b.rounds {
			r, err := linksOnce(ctx, b, hub, local, remote, n, idle)
			if err != nil {
				return fmt.Errorf("%d links: %w", n, err)
			}
			for k, v := range r {
				s.add(k, v)
			}
			progress("round %d links%d: rss %.0f MB, %.0f hub connections idle (%.0f at most while copying), idle CPU %.2f%% (hub %.2f%%), %d keys on the hub after %.2f s",
				round+1, n, r["rss"], r["conns"], r["conns_max"], r["cpu"], r["hub_cpu"], n*linksKeysEach, r["copy"])
		}
		kv := []any{"links", n}
		kv = append(kv, s.headline("idle_cpu_pct", "cpu")...)
		kv = append(kv, "idle_window_s", idle.Seconds())
		if b.quick {
			kv = append(kv, "idle_window", "quick")
		}
		kv = append(kv, "hub_idle_cpu_pct", s.med("hub_cpu"),
			"rss_mb", s.med("rss"), "heap_mb", s.med("heap"), "stacks_mb", s.med("stacks"), "goroutines", s.med("goroutines"),
			"hub_conns", s.med("conns"), "hub_conns_max", s.med("conns_max"),
			"copy_s", s.med("copy"), "copy_keys_per_s", s.med("copy/kps"), "keys", n*linksKeysEach)
		if n == 200 {
			kv = append(kv, "target", fmt.Sprintf("cpu<%g%%,conns<%d,rss<%gMB", linksTargetCPU, linksTargetConns, linksTargetRSS),
				"pass", yesNo(s.med("cpu") < linksTargetCPU && s.med("conns_max") < linksTargetConns && s.med("rss") < linksTargetRSS))
		}
		if b.ceilMset8 > 0 {
			kv = append(kv, "copy_vs_mset100", ratio(s.med("copy/kps")/b.ceilMset8))
		}
		b.emit("links"+strconv.Itoa(n), append(kv, "rounds", b.rounds)...)
	}
	return nil
}

func linksOnce(ctx context.Context, b *bench, hub *webdistest.Hub, local, remote redis.Conn, n int, idle time.Duration) (map[string]float64, error) {
	if err := flush(local, remote); err != nil {
		return nil, err
	}
	front, err := frontPort(hub.URL)
	if err != nil {
		return nil, err
	}
	links := b.newLinkSet()
	ls := make([]*runningLink, 0, n)
	defer func() {
		for _, l := range ls {
			l.cancel()
		}
		for _, l := range ls {
			l.stop()
		}
	}()
	for i := range n {
		cfg := linkConfig(hub, fmt.Sprintf("l%d:", i))
		cfg.Name = fmt.Sprintf("l%d", i)
		l, err := links.start(ctx, b, cfg)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	err = waitUntil(ctx, 120*time.Second, 50*time.Millisecond, func() bool {
		for _, l := range ls {
			if l.State() != link.Live {
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, l := range ls {
			if l.State() != link.Live {
				return nil, fmt.Errorf("link %s not live (state %s, last error %q): %w", l.Name(), l.State(), l.LastError(), err)
			}
		}
	}
	if !sleepCtx(ctx, linksSettle) {
		return nil, ctx.Err()
	}
	r := map[string]float64{}
	total := n * linksKeysEach
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		werr <- pipelineSet(ctx, local, total, func(i int) []byte {
			// Link by link, 1,000 keys each.
			return numKey(fmt.Sprintf("l%d:", i/linksKeysEach), i%linksKeysEach)
		}, func(int) []byte { return value100 })
	}()
	maxConns := 0
	err = waitUntil(ctx, 60*time.Second+time.Duration(total)*time.Second/2000, 5*time.Millisecond, func() bool {
		maxConns = max(maxConns, hubConns(front))
		seen, e := dbsize(remote)
		return e != nil || seen >= total
	})
	took := time.Since(start)
	if e := <-werr; e != nil {
		return nil, e
	}
	if err != nil {
		seen, _ := dbsize(remote)
		return nil, fmt.Errorf("%d of %d keys on the hub: %w", seen, total, err)
	}

	// Idle: every link holds its 1,000 keys, synced (its flush probe
	// samples them), and nothing changes.
	if !sleepCtx(ctx, linksSettle) {
		return nil, ctx.Err()
	}
	cpu0, hub0 := rusage(), cpuSnapshot(hub)
	if b.idleProfile != "" && n == 200 {
		// Only the idle window: the figure the target is about.
		f, err := os.Create(b.idleProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if !sleepCtx(ctx, idle) {
		return nil, ctx.Err()
	}
	cpu1, hub1 := rusage(), cpuSnapshot(hub)
	r["cpu"] = 100 * (cpu1 - cpu0).Seconds() / idle.Seconds()
	d := hub1.since(hub0)
	r["hub_cpu"] = 100 * (d["redis_remote"] + d["webdis"] + d["nginx"] + d["gateway"]) / idle.Seconds()
	r["conns"] = float64(hubConns(front))
	_, rss := measureMem(false)
	r["rss"] = float64(rss) / 1e6
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	r["heap"], r["stacks"] = float64(m.HeapInuse)/1e6, float64(m.StackInuse)/1e6
	r["goroutines"] = float64(runtime.NumGoroutine())
	r["conns_max"] = float64(maxConns)
	r["copy"] = took.Seconds()
	r["copy/kps"] = float64(total) / took.Seconds()
	return r, nil
}

// frontPort is the port of the hub's URL.
func frontPort(u string) (int, error) {
	host := strings.TrimPrefix(u, "https://")
	host, _, _ = strings.Cut(host, "/")
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return 443, nil
	}
	return strconv.Atoi(host[i+1:])
}

// hubConns counts this process's TCP connections established to port on
// loopback: the sockets of /proc/self/net/tcp{,6} in state 01 whose remote
// port is port and whose inode is one of this process's fds.
func hubConns(port int) int {
	mine := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		t, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(t, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(t, "socket:["), "]")] = true
		}
	}
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			x := strings.Fields(line)
			if len(x) < 10 || x[3] != "01" || !strings.HasSuffix(x[2], want) || !mine[x[9]] {
				continue
			}
			n++
		}
	}
	return n
}

// rusage is this process's user+system CPU time so far.
func rusage() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// linkSet starts the links of one measurement, sharing their hub as the
// service's links do.
type linkSet struct{ hubs *link.Hubs }

func (b *bench) newLinkSet() *linkSet { return &linkSet{hubs: link.NewHubs()} }

// start runs a link without waiting for it to be live.
func (s *linkSet) start(ctx context.Context, b *bench, cfg config.Link) (*runningLink, error) {
	l, err := s.hubs.New(cfg, b.logger())
	if err != nil {
		return nil, err
	}
	return b.runLink(ctx, l, false)
}
