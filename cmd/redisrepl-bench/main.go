// Command redisrepl-bench measures a replication link against the real parts
// it talks to (two redis-servers, webdis, nginx with mutual TLS, all on
// loopback, started by webdistest), each figure beside its ceiling and
// target (README, "Performance"). `make bench` runs it.
//
// Every scenario starts its own stack, runs the link in-process (link.New +
// Run, logs discarded unless -v) and stops everything it started, even on
// error or Ctrl-C. It prints one line per figure on stdout:
//
//	NAME key=value key=value ...
//
// NAME never changes between commits for the same figure and N (the N is in
// the name: burst20k, resync100k), so lines can be grepped and compared
// across runs. A headline figure carries its median over -rounds rounds
// followed by _min and _max; the other values are medians. Every line ends
// with load1, the machine's 1-minute load average when it was printed: the
// machine is shared, and a figure taken under load compares badly. Progress
// goes to stderr, prefixed by "#".
//
// Scenarios (-only REGEX selects by these names): ceilings, burst, lag,
// hotkeys, resync, memory, rc, bigkeys, gateway (both hubs side by side:
// gateway.go), links (many links in one process: links.go), wan (both hubs
// behind a delaying proxy at 50 and 200 ms of round trip: wan.go). burst and rc
// need the ceilings of the same run for their ratios, so they measure them
// first when -only left ceilings out.
//
// Profiling: -cpuprofile FILE labels samples by scenario (go tool pprof
// -tagfocus scenario=burst), -trace FILE writes an execution trace with a
// region per scenario (go tool trace), -idleprofile FILE profiles the idle
// window of 200 links alone.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// bench is the state shared by the scenarios of one run.
type bench struct {
	rounds  int
	quick   bool
	verbose bool
	out     io.Writer // figures
	// gatewayBin is the redisrepl binary the gateway scenario runs ("" =
	// build it).
	gatewayBin string
	// idleProfile: the links scenario writes a CPU profile of its idle
	// window of 200 links here ("" = none).
	idleProfile string
	workers     int // the links' workers, 0 = config's default
	failed      bool

	// ceilings measured in this run (medians of keys/s), 0 = not yet.
	ceilSet8, ceilMset8 float64

	mu   sync.Mutex
	hubs map[*webdistest.Hub]bool
}

type scenario struct {
	name string
	run  func(ctx context.Context, b *bench) error
}

var scenarios = []scenario{
	{"ceilings", runCeilings},
	{"burst", runBurst},
	{"lag", runLag},
	{"hotkeys", runHotkeys},
	{"resync", runResync},
	{"memory", runMemory},
	{"rc", runRC},
	{"bigkeys", runBigKeys},
	{"gateway", runGateway},
	{"cluster", runCluster},
	{"links", runLinks},
	{"wan", runWAN},
}

func main() { os.Exit(run()) }

func run() int {
	rounds := flag.Int("rounds", 3, "rounds per scenario: the median is reported, with min and max")
	only := flag.String("only", "", "run only the scenarios whose name matches this regular expression ("+scenarioNames()+")")
	quick := flag.Bool("quick", false, "smoke run: smaller N, shorter runs, 1 round unless -rounds is given")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the process during the scenarios to this file (samples carry the label scenario=NAME: go tool pprof -tagfocus scenario=burst)")
	traceFile := flag.String("trace", "", "write an execution trace of the process during the scenarios to this file (go tool trace)")
	idleProfile := flag.String("idleprofile", "", "links: write a CPU profile of the idle window of 200 links to this file (not with -cpuprofile)")
	verbose := flag.Bool("v", false, "log the link's warnings and errors to stderr")
	gatewayBin := flag.String("gateway-bin", "", "the redisrepl binary the gateway scenario runs (default: built from this tree)")
	workers := flag.Int("workers", 0, "workers per link (default: config's default)")
	flag.Parse()

	b := &bench{rounds: *rounds, quick: *quick, verbose: *verbose, out: os.Stdout, hubs: map[*webdistest.Hub]bool{},
		gatewayBin: *gatewayBin, idleProfile: *idleProfile, workers: *workers}
	if b.quick && !flagGiven("rounds") {
		b.rounds = 1
	}
	if b.rounds < 1 {
		fmt.Fprintln(os.Stderr, "redisrepl-bench: -rounds must be at least 1")
		return 2
	}
	if os.Getenv("STATE_DIRECTORY") == "" {
		// The links' sync states are locked by the process holding them
		// (link.StateDir): harnesses run side by side keep their own.
		dir, err := os.MkdirTemp("", "redisrepl-bench-state-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "redisrepl-bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Setenv("STATE_DIRECTORY", dir)
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(os.Stderr, "redisrepl-bench: -only: %v\n", err)
			return 2
		}
	}
	for _, name := range webdistest.Binaries {
		if _, err := webdistest.FindBinary(name); err != nil {
			fmt.Fprintf(os.Stderr, "redisrepl-bench: %v (make deps installs it)\n", err)
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process the
		// default way; the hub's children die with it (parent-death signal).
		<-ctx.Done()
		stop()
	}()

	for _, r := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{*cpuprofile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceFile, trace.Start, trace.Stop}} {
		done, err := record(r.path, r.start, r.stop)
		if err != nil {
			fmt.Fprintf(os.Stderr, "redisrepl-bench: %v\n", err)
			return 1
		}
		defer done()
	}

	b.header()
	start := time.Now()
	for _, s := range scenarios {
		if re != nil && !re.MatchString(s.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		progress("scenario %s", s.name)
		t := time.Now()
		var err error
		pprof.Do(ctx, pprof.Labels("scenario", s.name), func(ctx context.Context) {
			trace.WithRegion(ctx, s.name, func() { err = s.run(ctx, b) })
		})
		b.closeHubs() // whatever an early return left running
		if err != nil {
			if ctx.Err() != nil {
				b.emit(s.name, "error", "interrupted")
				break
			}
			b.failed = true
			b.emit(s.name, "error", quote(err.Error()))
		}
		progress("scenario %s took %s", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	progress("total %s", time.Since(start).Round(100*time.Millisecond))
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "redisrepl-bench: interrupted")
		return 130
	case b.failed:
		return 1
	}
	return 0
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

// header prints what the figures depend on.
func (b *bench) header() {
	commit := "unknown"
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	b.emit("redisrepl-bench",
		"commit", commit,
		"date", time.Now().UTC().Format(time.RFC3339),
		"gomaxprocs", runtime.GOMAXPROCS(0),
		"numcpu", runtime.NumCPU(),
		"go", runtime.Version(),
		"redis", redisVersion(),
		"webdis", webdisVersion(),
		"nginx", nginxVersion(),
		"rounds", b.rounds,
		"quick", b.quick)
}

func redisVersion() string {
	out, _ := exec.Command("redis-server", "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "unknown"
}

func nginxVersion() string {
	bin, err := webdistest.FindBinary("nginx")
	if err != nil {
		return "unknown"
	}
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	if m := regexp.MustCompile(`nginx/(\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "unknown"
}

// webdisVersion asks dpkg, then the binary's banner: webdis has no
// version flag.
func webdisVersion() string {
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "webdis").Output(); err == nil && len(out) > 0 {
		return string(out)
	}
	if bin, err := webdistest.FindBinary("webdis"); err == nil {
		if data, err := os.ReadFile(bin); err == nil {
			if m := regexp.MustCompile(`Webdis ([0-9][0-9.]*)`).FindSubmatch(data); m != nil {
				return string(m[1])
			}
		}
	}
	return "unknown"
}

// startHub starts a stack for one scenario; closeHubs stops it if the
// scenario did not.
func (b *bench) startHub(ctx context.Context, opts webdistest.Options) (*webdistest.Hub, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := webdistest.Start(opts)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.hubs[h] = true
	b.mu.Unlock()
	return h, nil
}

func (b *bench) closeHub(h *webdistest.Hub) {
	b.mu.Lock()
	delete(b.hubs, h)
	b.mu.Unlock()
	if err := h.Close(); err != nil {
		progress("closing the hub: %v", err)
	}
}

func (b *bench) closeHubs() {
	b.mu.Lock()
	hs := make([]*webdistest.Hub, 0, len(b.hubs))
	for h := range b.hubs {
		hs = append(hs, h)
	}
	b.mu.Unlock()
	for _, h := range hs {
		b.closeHub(h)
	}
}

// openStack starts the stack most scenarios use and connects to both Redis
// servers; done closes it all.
func (b *bench) openStack(ctx context.Context) (hub *webdistest.Hub, local, remote redis.Conn, done func(), err error) {
	if hub, err = b.startHub(ctx, defaultHub); err != nil {
		return nil, nil, nil, nil, err
	}
	if local, remote, err = dialBoth(hub); err != nil {
		b.closeHub(hub)
		return nil, nil, nil, nil, err
	}
	return hub, local, remote, func() { local.Close(); remote.Close(); b.closeHub(hub) }, nil
}

// defaultHub is the stack most scenarios use: nginx's body limit raised.
var defaultHub = webdistest.Options{MaxBodySize: "64m"}

func (b *bench) logger() zerolog.Logger {
	if b.verbose {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	}
	// Discarded at the level a service logs at: debug events cost CPU per
	// key even when discarded.
	return zerolog.New(io.Discard).Level(zerolog.InfoLevel)
}

// emit prints one figure: name, then key=value pairs.
func (b *bench) emit(name string, kv ...any) {
	var s strings.Builder
	s.WriteString(name)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&s, " %v=%s", kv[i], value(kv[i+1]))
	}
	// The machine is shared: how busy it was when the figure was taken.
	s.WriteString(" load1=" + load1())
	fmt.Fprintln(b.out, s.String())
}

// load1 is the 1-minute load average.
func load1() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func value(v any) string {
	switch v := v.(type) {
	case float64:
		return num(v)
	case time.Duration:
		return num(float64(v) / float64(time.Millisecond))
	default:
		return fmt.Sprint(v)
	}
}

// num prints v with about three significant digits, and no exponent.
func num(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func ratio(v float64) string { return fmt.Sprintf("%.2fx", v) }

func quote(s string) string { return fmt.Sprintf("%q", s) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// kn names a count the way figure names do: 20000 → "20k", 1000000 → "1m".
func kn(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dm", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// errTimeout marks a measurement that did not finish in its time.
var errTimeout = errors.New("timed out")

// value100 is the ~100-byte value of every bulk write.
var value100 = bytes.Repeat([]byte("v"), 100)

// record starts recording (a CPU profile, a trace) into the file path, "" for
// none, and returns what stops it and closes the file.
func record(path string, start func(io.Writer) error, stop func()) (done func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		stop()
		f.Close()
	}, nil
}
