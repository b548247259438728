package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// CPU accounting: this process and its descendants (the hub's redis-servers,
// webdis, nginx master and workers, or the gateway) read from /proc, so that a figure can
// say where the CPU went (the machine has two cores for all of them).

// cpuParts are the components, in print order.
var cpuParts = []string{"bench", "redis_local", "redis_remote", "webdis", "nginx", "gateway"}

// cpuTimes is CPU seconds (user+system) by component since each started.
type cpuTimes map[string]float64

const clockTicks = 100.0 // USER_HZ on Linux

func cpuSnapshot(hub *webdistest.Hub) cpuTimes {
	type proc struct {
		ppid  int
		comm  string
		ticks float64
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		data, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:]) // state ppid ... utime(12) stime(13)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		procs[pid] = proc{ppid, s[open+1 : end], ut + st}
	}
	self := os.Getpid()
	out := cpuTimes{"bench": procs[self].ticks / clockTicks}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	localPort := hub.LocalAddr[strings.LastIndexByte(hub.LocalAddr, ':')+1:]
	todo := append([]int(nil), children[self]...)
	for len(todo) > 0 {
		pid := todo[0]
		todo = append(todo[1:], children[pid]...)
		p := procs[pid]
		part := ""
		switch {
		case strings.HasPrefix(p.comm, "redis-server"):
			part = "redis_remote"
			// redis-server rewrites its title to "redis-server HOST:PORT".
			cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if c := string(cmd); strings.Contains(c, ":"+localPort) || strings.Contains(c, "\x00"+localPort+"\x00") {
				part = "redis_local"
			}
		case strings.HasPrefix(p.comm, "webdis"):
			part = "webdis"
		case strings.HasPrefix(p.comm, "nginx"):
			part = "nginx"
		case strings.HasPrefix(p.comm, "redisrepl"): // "redisrepl gateway" run by webdistest
			part = "gateway"
		default:
			continue
		}
		out[part] += p.ticks / clockTicks
	}
	return out
}

// since is c minus old, component by component.
func (c cpuTimes) since(old cpuTimes) cpuTimes {
	d := cpuTimes{}
	for _, k := range cpuParts {
		d[k] = c[k] - old[k]
	}
	return d
}

// addPerKey adds to s, for each component and their total, the CPU
// microseconds per key of d over n keys.
func (d cpuTimes) addPerKey(s series, prefix string, n int) {
	total := 0.0
	for _, k := range cpuParts {
		s.add(prefix+"cpu/"+k, d[k]*1e6/float64(n))
		total += d[k]
	}
	s.add(prefix+"cpu/total", total*1e6/float64(n))
}

// cpuFields are the medians added by addPerKey, as figure fields.
func cpuFields(s series, prefix string) []any {
	kv := []any{"cpu_us_per_key", s.med(prefix + "cpu/total")}
	for _, k := range cpuParts {
		kv = append(kv, "cpu_us_per_key_"+k, s.med(prefix+"cpu/"+k))
	}
	return kv
}
