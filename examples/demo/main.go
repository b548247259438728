// Command demo is the program behind `make demo`: it starts a throw-away
// stack on loopback (a local Redis, a remote Redis behind Webdis behind nginx
// with mutual TLS, certificates generated on the spot), runs the redisrepl
// binary on it with a one-link configuration file, and acts as a lab: it
// writes keys of every kind locally and shows when each one is visible on the
// remote Redis, which it reads directly, as an observer.
//
//	go run ./examples/demo [-bin bin/redisrepl] [-duration 10s] [-keep]
//
// It needs redis-server, webdis and nginx installed (make deps). It stops
// everything it started when it ends, or on Ctrl-C; with -keep it leaves the
// stack running until Ctrl-C and prints how to reach it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

const (
	namespace   = "lab1:"
	linkName    = "lab1"
	keyTimeout  = 15 * time.Second // how long a key may take to show up remotely
	pollEvery   = 2 * time.Millisecond
	tickEvery   = 100 * time.Millisecond
	stopTimeout = 15 * time.Second // SIGTERM grace before SIGKILL
)

func main() {
	os.Exit(run())
}

// say prints one line of the demo's own narrative.
func say(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

func run() (code int) {
	var (
		bin      = flag.String("bin", "./bin/redisrepl", "redisrepl `binary` to run (make build makes bin/redisrepl)")
		duration = flag.Duration("duration", 10*time.Second, "length of the live phase (one counter update per 100 ms); 0 skips it")
		keep     = flag.Bool("keep", false, "leave the stack and redisrepl running at the end, print how to reach them, and wait for Ctrl-C")
		hubKind  = flag.String("hub", "nginx", "the hub: `nginx` (nginx with mutual TLS in front of Webdis) or gateway (redisrepl gateway, the same binary, one ACL user per lab)")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: demo [-bin FILE] [-duration D] [-keep] [-hub nginx|gateway]\n\n"+
			"Starts local Redis, remote Redis, Webdis and nginx (mutual TLS) on loopback,\n"+
			"or with -hub gateway the remote Redis behind 'redisrepl gateway' (mutual TLS),\n"+
			"runs redisrepl on them and shows keys written locally arriving remotely.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	binPath, err := filepath.Abs(*bin)
	if err == nil {
		_, err = os.Stat(binPath)
	}
	if err != nil {
		say("demo: redisrepl binary %s: %v (run `make build` first, or pass -bin)", *bin, err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The stack.
	opts := webdistest.Options{MaxBodySize: "16m"}
	switch *hubKind {
	case "nginx":
		say("demo: starting local Redis, remote Redis, Webdis and nginx (mutual TLS)...")
	case "gateway":
		say("demo: starting local Redis, remote Redis and 'redisrepl gateway' (mutual TLS, the lab's own ACL user)...")
		opts.Front, opts.GatewayBinary, opts.Namespaces = webdistest.FrontGateway, binPath, []string{namespace}
	default:
		say("demo: -hub %q: want nginx or gateway", *hubKind)
		return 2
	}
	t0 := time.Now()
	hub, err := webdistest.Start(opts)
	if err != nil {
		say("demo: cannot start the stack: %v", err)
		say("demo: redis-server, webdis and nginx must be installed (make deps)")
		return 1
	}
	say("demo: stack up in %d ms", ms(time.Since(t0)))
	say("  local Redis   %s", hub.LocalAddr)
	say("  remote Redis  %s  (read directly by this demo)", hub.RemoteAddr)
	if *hubKind == "gateway" {
		say("  hub           %s  (redisrepl gateway, client certificate required)", hub.URL)
	} else {
		say("  Webdis        %s  (nginx, client certificate required)", hub.URL)
	}

	var rr *webdistest.Process
	defer func() {
		if rr != nil {
			if err := stopRedisrepl(rr); err != nil {
				say("demo: %v", err)
				code = 1
			}
		}
		t := time.Now()
		if err := hub.Close(); err != nil {
			say("demo: stopping the stack: %v", err)
			code = 1
		} else {
			parts := "redis-server x2, webdis, nginx"
			if *hubKind == "gateway" {
				parts = "redis-server x2, redisrepl gateway"
			}
			say("demo: stack stopped in %d ms (%s)", ms(time.Since(t)), parts)
		}
	}()
	// The deferred cleanup above runs before main's os.Exit and may turn
	// code into a failure.
	code = func() int {
		cfgPath := filepath.Join(hub.Dir, "redisrepl.toml")
		if err := writeConfig(cfgPath, hub); err != nil {
			say("demo: %v", err)
			return 1
		}
		say("  config        %s", cfgPath)

		say("demo: starting %s -config redisrepl.toml (its log lines start with \"redisrepl |\")", *bin)
		if rr, err = startRedisrepl(binPath, cfgPath); err != nil {
			say("demo: %v", err)
			return 1
		}

		lab, err := newLab(hub, rr)
		if err != nil {
			say("demo: %v", err)
			return 1
		}
		defer lab.close()

		if err := lab.writes(ctx); err != nil {
			return lab.fail(ctx, err)
		}
		if *duration > 0 {
			if err := lab.live(ctx, *duration); err != nil {
				return lab.fail(ctx, err)
			}
		}
		ok := lab.summary()
		if *keep {
			if err := keepRunning(ctx, hub, rr, cfgPath); err != nil {
				say("demo: %v", err)
				return 1
			}
		}
		if !ok {
			return 1
		}
		return 0
	}()
	return code
}

// writeConfig writes the one-link configuration file redisrepl runs with.
func writeConfig(path string, hub *webdistest.Hub) error {
	cfg := fmt.Sprintf(`# Written by examples/demo: one link from the demo's local Redis to its hub.
[service]
log_level = "info"

[[link]]
name      = %q
local     = %q
namespace = %q
remote    = %q
cert      = %q
key       = %q
ca        = %q
direction = "push"
state_file = %q
`, linkName, hub.LocalAddr, namespace, hub.URL, hub.Cert, hub.Key, hub.CA,
		filepath.Join(filepath.Dir(path), linkName+".state"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// startRedisrepl runs redisrepl in its own process group: Ctrl-C reaches
// only the demo, which then stops redisrepl with SIGTERM like a service
// manager would. If the demo dies, the kernel kills redisrepl.
func startRedisrepl(bin, cfgPath string) (*webdistest.Process, error) {
	return webdistest.StartProcessTo("redisrepl", "", &logRelay{out: &prefixWriter{w: os.Stdout}}, syscall.SIGKILL,
		bin, "-config", cfgPath)
}

// stopRedisrepl sends SIGTERM and checks that redisrepl exits with status 0.
func stopRedisrepl(rr *webdistest.Process) error {
	if !rr.Running() {
		return fmt.Errorf("redisrepl (pid %d) had already exited: %v", rr.Pid(), exitText(rr.ExitErr()))
	}
	t := time.Now()
	if err := rr.Stop(); err != nil {
		return err
	}
	if err := rr.ExitErr(); err != nil {
		return fmt.Errorf("redisrepl (pid %d) stopped with %v after SIGTERM; want exit status 0", rr.Pid(), exitText(err))
	}
	say("demo: redisrepl stopped by SIGTERM in %d ms, exit status 0", ms(time.Since(t)))
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// logRelay prints redisrepl's log lines (zerolog JSON, as its stderr is a
// pipe) in zerolog's console form, each prefixed with "redisrepl |" and
// the demo's clock. It is the child's stdout and stderr: a line may come in
// several writes.
type logRelay struct {
	out     *prefixWriter
	console *zerolog.ConsoleWriter
	partial []byte
}

func (r *logRelay) Write(b []byte) (int, error) {
	if r.console == nil {
		tty := false
		if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
		r.console = &zerolog.ConsoleWriter{
			Out:           r.out,
			NoColor:       !tty,
			PartsOrder:    []string{zerolog.LevelFieldName, zerolog.MessageFieldName},
			FieldsExclude: []string{zerolog.TimestampFieldName},
		}
	}
	r.partial = append(r.partial, b...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		line := r.partial[:i+1]
		if line[0] != '{' {
			r.out.Write(line)
		} else if _, err := r.console.Write(line); err != nil {
			r.out.Write(line)
		}
		r.partial = r.partial[i+1:]
	}
	if len(r.partial) > 1<<20 { // a line this long is printed as it is
		r.out.Write(append(r.partial, '\n'))
		r.partial = nil
	}
	return len(b), nil
}

type prefixWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		fmt.Fprintf(p.w, "  redisrepl | %s", line)
	}
	return len(b), nil
}

// lab writes to the local Redis and observes the remote one.
type lab struct {
	hub           *webdistest.Hub
	rr            *webdistest.Process
	local, remote redis.Conn
	keys          int             // key writes (and the delete) seen remotely
	lags          []time.Duration // write -> remote visibility, every key and update
	updates       int             // live phase: counter updates written
	seen          int             // live phase: distinct values seen remotely
	late          int             // keys or updates that never showed up
}

func newLab(hub *webdistest.Hub, rr *webdistest.Process) (*lab, error) {
	local, err := hub.Local()
	if err != nil {
		return nil, fmt.Errorf("connect to the local Redis: %w", err)
	}
	remote, err := hub.Remote()
	if err != nil {
		local.Close()
		return nil, fmt.Errorf("connect to the remote Redis: %w", err)
	}
	return &lab{hub: hub, rr: rr, local: local, remote: remote}, nil
}

func (l *lab) close() {
	l.local.Close()
	l.remote.Close()
}

var errInterrupted = errors.New("interrupted")

func (l *lab) fail(ctx context.Context, err error) int {
	if errors.Is(err, errInterrupted) || ctx.Err() != nil {
		say("demo: interrupted; cleaning up")
		return 130
	}
	say("demo: FAILED: %v", err)
	return 1
}

// step is one local write of the demo.
type step struct {
	what string // the command, as shown
	key  string
	do   func(c redis.Conn) error
}

func cmd(args ...any) func(c redis.Conn) error {
	return func(c redis.Conn) error {
		_, err := c.Do(args[0].(string), args[1:]...)
		return err
	}
}

// writes writes keys of every type, one at a time, and waits for each one
// to be visible on the remote.
func (l *lab) writes(ctx context.Context) error {
	binKey := namespace + "raw/\x00\xff.bin"
	ready := namespace + "ready"
	steps := []step{
		{"SET lab1:greeting \"hello from lab1\"", namespace + "greeting",
			cmd("SET", namespace+"greeting", "hello from lab1")},
		{"HSET lab1:sample:42 name=soil-7 temp=21.5 unit=C", namespace + "sample:42",
			cmd("HSET", namespace+"sample:42", "name", "soil-7", "temp", "21.5", "unit", "C")},
		{"RPUSH lab1:queue job-1 job-2 job-3", namespace + "queue",
			cmd("RPUSH", namespace+"queue", "job-1", "job-2", "job-3")},
		{"SADD lab1:tags red green blue", namespace + "tags",
			cmd("SADD", namespace+"tags", "red", "green", "blue")},
		{"ZADD lab1:scores alice=3 bob=7 carol=5", namespace + "scores",
			cmd("ZADD", namespace+"scores", 3, "alice", 7, "bob", 5, "carol")},
		{"SET lab1:session token-abc EX 60", namespace + "session",
			cmd("SET", namespace+"session", "token-abc", "EX", 60)},
		{fmt.Sprintf("SET %q (binary key with '/') to 6 binary bytes", binKey), binKey,
			cmd("SET", binKey, "\x00\x01/+\xfe\xff")},
		{"DEL lab1:queue", namespace + "queue",
			cmd("DEL", namespace+"queue")},
	}

	// First a probe key: it shows when the link is up (it may arrive by
	// the link's initial sync rather than by an event).
	say("demo: waiting for the link to come up (probe key %s)...", ready)
	t := time.Now()
	if _, err := l.local.Do("SET", ready, t.Format("15:04:05.000")); err != nil {
		return fmt.Errorf("local SET: %w", err)
	}
	if err := l.await(ctx, ready, t, 30*time.Second, true); err != nil {
		return err
	}

	say("demo: writing keys locally, one at a time, and reading them on the remote")
	for _, s := range steps {
		t := time.Now()
		if err := s.do(l.local); err != nil {
			return fmt.Errorf("local %s: %w", s.what, err)
		}
		say("local:  %s", s.what)
		if err := l.await(ctx, s.key, t, keyTimeout, false); err != nil {
			return err
		}
	}

	// The whole namespace, compared key by key (TTLs within 1 s).
	ld, err := webdistest.Dump(l.local, namespace)
	if err != nil {
		return fmt.Errorf("dump local: %w", err)
	}
	rd, err := webdistest.Dump(l.remote, namespace)
	if err != nil {
		return fmt.Errorf("dump remote: %w", err)
	}
	if diff := webdistest.Diff(ld, rd, 1000); len(diff) > 0 {
		for _, d := range diff {
			say("check:  DIFFERENT %s", d)
		}
		return fmt.Errorf("local and remote namespaces differ")
	}
	say("check:  local and remote %s* are equal (%d keys, types, contents and TTLs)", namespace, len(ld))
	return nil
}

// await polls the remote until key holds what it holds locally (or is
// gone, as it is locally), then prints how long it took since the local
// write at t. A probe's delay (the link's start) is left out of the stats.
func (l *lab) await(ctx context.Context, key string, t time.Time, timeout time.Duration, probe bool) error {
	want, err := webdistest.ReadKey(l.local, key)
	if err != nil {
		return fmt.Errorf("read local %q: %w", key, err)
	}
	var got webdistest.Key
	for {
		if got, err = webdistest.ReadKey(l.remote, key); err != nil {
			return fmt.Errorf("read remote %q: %w", key, err)
		}
		if matches(got, want) {
			break
		}
		if err := l.check(ctx); err != nil {
			return err
		}
		if time.Since(t) > timeout {
			l.late++
			return fmt.Errorf("remote: %q not replicated after %d ms: want %s, remote has %s",
				key, ms(time.Since(t)), shown(want), shown(got))
		}
		time.Sleep(pollEvery)
	}
	lag := time.Since(t)
	switch {
	case probe:
		say("remote: %s = %s (after %d ms: the link is up)", show(key), shown(got), ms(lag))
		return nil
	case want.Type == "none":
		say("remote: %s deleted (after %d ms)", show(key), ms(lag))
	default:
		say("remote: %s = %s (after %d ms)", show(key), shown(got), ms(lag))
	}
	l.lags = append(l.lags, lag)
	l.keys++
	return nil
}

// check returns an error once the demo is interrupted or redisrepl exited.
func (l *lab) check(ctx context.Context) error {
	if ctx.Err() != nil {
		return errInterrupted
	}
	if !l.rr.Running() {
		return fmt.Errorf("redisrepl exited unexpectedly: %s", exitText(l.rr.ExitErr()))
	}
	return nil
}

// live writes one counter update per 100 ms for d and prints each value as
// it shows up on the remote.
func (l *lab) live(ctx context.Context, d time.Duration) error {
	key := namespace + "counter"
	say("demo: live phase for %v: INCR %s locally every %d ms, remote values as they arrive",
		d, key, ms(tickEvery))

	var (
		mu      sync.Mutex
		written = map[int64]time.Time{} // value -> when it was written
		last    int64                   // last value written
		werr    error
	)
	wdone := make(chan struct{})
	stopWriting := make(chan struct{})
	go func() {
		defer close(wdone)
		tick := time.NewTicker(tickEvery)
		defer tick.Stop()
		end := time.After(d)
		for {
			t := time.Now()
			v, err := redis.Int64(l.local.Do("INCR", key))
			mu.Lock()
			if err != nil {
				werr = err
			} else {
				written[v], last = t, v
				l.updates++
			}
			mu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-end:
				return
			case <-stopWriting:
				return
			}
		}
	}()
	defer func() { close(stopWriting); <-wdone }()

	var seen int64
	var writerDone time.Time
	for {
		v, err := redis.Int64(l.remote.Do("GET", key))
		if err != nil && !errors.Is(err, redis.ErrNil) {
			return fmt.Errorf("read remote %s: %w", key, err)
		}
		now := time.Now()
		mu.Lock()
		if werr != nil {
			mu.Unlock()
			return fmt.Errorf("local INCR: %w", werr)
		}
		if v > seen {
			if at, ok := written[v]; ok {
				lag := now.Sub(at)
				l.lags = append(l.lags, lag)
				l.seen++
				note := ""
				if v > seen+1 && seen > 0 {
					note = fmt.Sprintf(", %d coalesced", v-seen-1)
				}
				say("remote: %s = %d (after %d ms%s)", key, v, ms(lag), note)
			}
			seen = v
		}
		finished := false
		select {
		case <-wdone:
			finished = true
		default:
		}
		done := finished && seen == last && last > 0
		mu.Unlock()
		if done {
			return nil
		}
		if finished {
			if writerDone.IsZero() {
				writerDone = now
			} else if now.Sub(writerDone) > keyTimeout {
				mu.Lock()
				l.late++
				mu.Unlock()
				return fmt.Errorf("remote %s = %d, %d ms after the last write of %d", key, seen, ms(now.Sub(writerDone)), last)
			}
		}
		if err := l.check(ctx); err != nil {
			return err
		}
		time.Sleep(pollEvery)
	}
}

// summary prints the one-line result and tells whether everything arrived.
func (l *lab) summary() bool {
	lags := append([]time.Duration(nil), l.lags...)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	pct := func(p float64) int64 {
		if len(lags) == 0 {
			return 0
		}
		i := int(p * float64(len(lags)-1))
		return ms(lags[i])
	}
	status := "OK"
	if l.late > 0 {
		status = fmt.Sprintf("FAILED (%d late)", l.late)
	}
	say("summary: %s: %d key writes and %d/%d counter updates seen on the remote; lag p50 %d ms, p99 %d ms, max %d ms",
		status, l.keys, l.seen, l.updates, pct(0.5), pct(0.99), pct(1))
	return l.late == 0
}

// keepRunning prints how to reach the stack and waits for Ctrl-C.
func keepRunning(ctx context.Context, hub *webdistest.Hub, rr *webdistest.Process, cfgPath string) error {
	lport := hub.LocalAddr[strings.LastIndexByte(hub.LocalAddr, ':')+1:]
	rport := hub.RemoteAddr[strings.LastIndexByte(hub.RemoteAddr, ':')+1:]
	say("")
	say("demo: -keep: everything stays up until Ctrl-C")
	say("  local Redis    %s      redis-cli -p %s set lab1:x hello", hub.LocalAddr, lport)
	say("  remote Redis   %s      redis-cli -p %s get lab1:x", hub.RemoteAddr, rport)
	say("  Webdis (mTLS)  %s", hub.URL)
	say("  CA             %s", hub.CA)
	say("  client cert    %s", hub.Cert)
	say("  client key     %s", hub.Key)
	say("  config         %s", cfgPath)
	say("  redisrepl      pid %d", rr.Pid())
	say("  through the hub, as redisrepl does:")
	say("    curl --cacert %s \\", hub.CA)
	say("      --cert %s --key %s \\", hub.Cert, hub.Key)
	say("      -d GET/lab1:x %s/", hub.URL)
	select {
	case <-ctx.Done():
		say("")
		say("demo: Ctrl-C: stopping")
		return nil
	case <-rr.Done():
		return fmt.Errorf("redisrepl exited: %s", exitText(rr.ExitErr()))
	}
}

// matches compares type and contents exactly, expiry within a second.
func matches(got, want webdistest.Key) bool {
	d := got.ExpireAt - want.ExpireAt
	return got.Type == want.Type && got.Contents == want.Contents &&
		(got.ExpireAt == 0) == (want.ExpireAt == 0) && d < 1000 && d > -1000
}

// shown is a key as the demo prints it: a string quoted, a hash's, set's
// or sorted set's elements in braces, a list's in brackets, and its TTL.
func shown(k webdistest.Key) string {
	items := k.Items()
	var s string
	switch k.Type {
	case "none":
		return "(no key)"
	case "string":
		s = strconv.Quote(items[0])
	case "hash":
		s = "{" + strings.Join(items, " ") + "}"
	case "list":
		s = "[" + strings.Join(shownAll(items), " ") + "]"
	case "set":
		s = "{" + strings.Join(shownAll(items), " ") + "}"
	case "zset":
		var pairs []string
		for i := 0; i+1 < len(items); i += 2 {
			pairs = append(pairs, show(items[i])+":"+items[i+1])
		}
		s = "{" + strings.Join(pairs, " ") + "}"
	default:
		s = "(" + k.Type + ")"
	}
	if k.ExpireAt > 0 {
		s += fmt.Sprintf(" (ttl %d s)", (k.ExpireAt-time.Now().UnixMilli()+500)/1000)
	}
	return s
}

func shownAll(items []string) []string {
	out := make([]string, len(items))
	for i, v := range items {
		out[i] = show(v)
	}
	return out
}

// show quotes a key or value only when it is not plain text.
func show(s string) string {
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}
