package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Big keys: one set of N members (2,000,000) and one hash of N/2 fields
// (1,000,000), each alone in the namespace, copied by `redisrepl run` and
// then compared by `redisrepl verify`, both run as processes of their own
// (the binary built from this tree, or -redisrepl), so that their peak RSS
// is theirs alone: the kernel's ru_maxrss of the finished process.
//
//   - copy: from the start of `redisrepl run` (a first start: the remote is
//     empty, the start's resync digests the key and copies it in chunks)
//     until the remote holds as many elements, then SIGTERM;
//   - verify: `redisrepl verify` of the same link, which must exit 0 (equal).
//
// The target: both under 64 MB of peak RSS, whatever the key's
// size. pass says whether every peak was under it.

const bigKeysTargetMB = 64

var redisreplBin = flag.String("redisrepl", "", "bigkeys: the redisrepl `binary` to measure (default: built from this tree)")

func runBigKeys(ctx context.Context, b *bench) error {
	bin, cleanup, err := redisreplBinary(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	hub, local, remote, done, err := b.openStack(ctx)
	if err != nil {
		return err
	}
	defer done()
	dir, err := os.MkdirTemp("", "redisrepl-bigkeys")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	n := 2_000_000
	if b.quick {
		n = 200_000
	}
	kinds := []struct {
		name, ty string
		n        int
	}{
		{"bigkeys_set" + kn(n), "set", n},
		{"bigkeys_hash" + kn(n/2), "hash", n / 2},
	}
	s := series{}
	for round := range b.rounds {
		for _, k := range kinds {
			r, err := bigKeyOnce(ctx, b, hub, local, remote, bin, dir, k.ty, k.n)
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			for q, v := range r {
				s.add(k.name+"/"+q, v)
			}
			progress("round %d %s: copy %.1f s, peak %.0f MB; verify %.1f s, peak %.0f MB",
				round+1, k.name, r["copy_s"], r["copy_mb"], r["verify_s"], r["verify_mb"])
		}
	}
	for _, k := range kinds {
		p := k.name + "/"
		pass := true
		for _, q := range []string{"copy_mb", "verify_mb"} {
			for _, v := range s[p+q] {
				pass = pass && v < bigKeysTargetMB
			}
		}
		b.emit(k.name, append(s.headline("copy_peak_rss_mb", p+"copy_mb"),
			append(s.headline("verify_peak_rss_mb", p+"verify_mb"),
				"copy_secs", s.med(p+"copy_s"),
				"verify_secs", s.med(p+"verify_s"),
				"elements", k.n,
				"bench_rss_mb_at_start", s.med(p+"parent_mb"),
				"target", fmt.Sprintf("<%dMB", bigKeysTargetMB),
				"pass", yesNo(pass),
				"binary", quote(bin),
				"rounds", b.rounds)...)...)
	}
	return nil
}

// redisreplBinary is -redisrepl, or the redisrepl of this tree built into a
// temporary directory.
func redisreplBinary(ctx context.Context) (string, func(), error) {
	if *redisreplBin != "" {
		p, err := filepath.Abs(*redisreplBin)
		return p, func() {}, err
	}
	dir, err := os.MkdirTemp("", "redisrepl-bin")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "redisrepl")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/redisrepl/redisrepl/cmd/redisrepl").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build: %v: %s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func bigKeyOnce(ctx context.Context, b *bench, hub *webdistest.Hub, local, remote redis.Conn, bin, dir, ty string, n int) (map[string]float64, error) {
	if err := flush(local, remote); err != nil {
		return nil, err
	}
	const key = "bk:key"
	if err := fillBig(ctx, local, key, ty, n); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "redisrepl.toml")
	os.Remove(filepath.Join(dir, "bk.state"))
	cfg := fmt.Sprintf(`[service]
log_level = "warn"

[[link]]
name       = "bigkeys"
local      = %q
remote     = %q
namespace  = "bk:"
cert       = %q
key        = %q
ca         = %q
state_file = %q
`, hub.LocalAddr, hub.URL, hub.Cert, hub.Key, hub.CA, filepath.Join(dir, "bk.state"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}

	// Copy.
	// A child's ru_maxrss counts the peak RSS of the address space it had
	// before exec, which on Linux is this process's (os/exec clones it):
	// return what an earlier scenario left (the memory scenario peaks over
	// 200 MB) and reset this process's peak, so that the figure is the
	// child's.
	parentMB := freeMemory()
	var logs bytes.Buffer
	run := exec.Command(bin, "run", "-config", cfgPath)
	run.Stdout, run.Stderr = &logs, &logs
	start := time.Now()
	if err := run.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	card := map[string]string{"set": "SCARD", "hash": "HLEN"}[ty]
	err := waitUntil(ctx, 10*time.Minute, 50*time.Millisecond, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		m, _ := redis.Int(remote.Do(card, key))
		return m == n
	})
	copySecs := time.Since(start).Seconds()
	_ = run.Process.Signal(syscall.SIGTERM)
	var runErr error
	select {
	case runErr = <-exited:
	case <-time.After(30 * time.Second):
		_ = run.Process.Kill()
		runErr = <-exited
	}
	if err != nil {
		return nil, fmt.Errorf("copy: %w; redisrepl run: %v: %s", err, runErr, tail(logs.String()))
	}
	if m, _ := redis.Int(remote.Do(card, key)); m != n {
		return nil, fmt.Errorf("copy: redisrepl run ended (%v) with %d of %d elements on the remote: %s", runErr, m, n, tail(logs.String()))
	}
	copyMB := maxRSSMB(run.ProcessState)

	// Verify.
	parentMB = max(parentMB, freeMemory())
	var out bytes.Buffer
	verify := exec.CommandContext(ctx, bin, "verify", "-config", cfgPath)
	verify.Stdout, verify.Stderr = &out, &out
	start = time.Now()
	err = verify.Run()
	verifySecs := time.Since(start).Seconds()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("verify: %v (want exit 0: the sides are equal): %s", err, tail(out.String()))
	}
	return map[string]float64{
		"copy_s": copySecs, "copy_mb": copyMB,
		"verify_s": verifySecs, "verify_mb": maxRSSMB(verify.ProcessState),
		"parent_mb": parentMB,
	}, nil
}

// freeMemory returns this process's free memory to the OS, resets its peak
// RSS (resetPeakRSS), and says its RSS in MB: a floor of the children's
// ru_maxrss.
func freeMemory() float64 {
	resetPeakRSS()
	rss, _ := vm()
	return float64(rss) / 1e6
}

// fillBig writes a set of n members or a hash of n fields at key, 1,000
// per command, pipelined.
func fillBig(ctx context.Context, c redis.Conn, key, ty string, n int) error {
	const per, window = 1000, 20
	cmd := map[string]string{"set": "SADD", "hash": "HSET"}[ty]
	pending := 0
	for i := 0; i < n; i += per {
		if err := ctx.Err(); err != nil {
			return err
		}
		args := []any{key}
		for j := i; j < min(i+per, n); j++ {
			if ty == "hash" {
				args = append(args, fmt.Sprintf("field-%08d", j), fmt.Sprintf("value-%d", j))
			} else {
				args = append(args, fmt.Sprintf("member-%08d", j))
			}
		}
		if err := c.Send(cmd, args...); err != nil {
			return err
		}
		if pending++; pending == window {
			if err := receive(c, pending); err != nil {
				return err
			}
			pending = 0
		}
	}
	return receive(c, pending)
}

func receive(c redis.Conn, n int) error {
	if err := c.Flush(); err != nil {
		return err
	}
	for range n {
		if _, err := c.Receive(); err != nil {
			return err
		}
	}
	return nil
}

// maxRSSMB is the peak RSS of a finished process, in MB (ru_maxrss is in
// KiB on Linux).
func maxRSSMB(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return float64(ru.Maxrss) * 1024 / 1e6
}

// tail is the end of a process's output, for an error message.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
