package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

const verifyUsage = `Usage:
  redisrepl verify [-config FILE] [-link NAME] [flags]
  redisrepl verify -raddr ADDR -haddr URL -cert FILE -key FILE -CA FILE -nam NAMESPACE
                   [-lCA FILE] [-lcert FILE -lkey FILE] [flags]

Compare one link's namespace on the local Redis and on the remote, key by key:
type, contents (by digest, computed on each side) and expiry. The namespace is
read a SCAN page at a time, so memory stays bounded whatever its size.
-link may be left out when FILE has a single [[link]].

Each difference is printed on stdout, the key quoted as a Go string, binary
bytes escaped (values are never printed):
  missing locally: KEY (TYPE)      only the remote has it
  missing remotely: KEY (TYPE)     only the local side has it
  type differs: KEY (local T1, remote T2)
  value differs: KEY (TYPE)
  ttl differs: KEY (local expires in D1, remote D2)   beyond -ttl-tolerance
then a summary: keys compared, differences by kind, time taken. Progress goes
to stderr every few seconds. The link may be running meanwhile: keys changing
during the comparison may then show up as differences.

-repair copies whole keys, each written atomically, to make one side equal to
the other, page by page as differences are found:
  -repair or -repair=remote   make the remote equal to the local side
  -repair=local               make the local side equal to the remote
(a key only on the side being repaired is deleted there).

Exit status: 0 the sides are equal (or every difference found was repaired),
1 they differ, 2 could not compare (or a repair failed, or interrupted).

Flags:
`

// Difference kinds, in the order of the summary.
var diffKinds = []string{"missing locally", "missing remotely", "type differs", "value differs", "ttl differs"}

// repairFlag is -repair[=remote|local]: the side made equal to the other.
type repairFlag struct{ side string }

func (r *repairFlag) String() string   { return r.side }
func (r *repairFlag) IsBoolFlag() bool { return true }
func (r *repairFlag) Set(v string) error {
	switch v {
	case "true", "remote":
		r.side = "remote"
	case "local":
		r.side = "local"
	case "false":
		r.side = ""
	default:
		return fmt.Errorf("want -repair, -repair=remote or -repair=local")
	}
	return nil
}

func verifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redisrepl verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		repair   repairFlag
		cfgPath  = fs.String("config", config.DefaultPath, "configuration `file`")
		linkName = fs.String("link", "", "`name` of the [[link]] to verify (optional when the file has one)")
		one      = addOneLinkFlags(fs)
		tol      = fs.Duration("ttl-tolerance", 2*time.Second, "expiry times this far apart count as equal")
		maxDiffs = fs.Int("max-diffs", 1000, "print at most `N` differences (all are counted)")
	)
	fs.Var(&repair, "repair", "make the sides equal: -repair or -repair=remote copies local keys to the remote, -repair=local the other way")
	if status, ok := parseFlags(fs, args, verifyUsage, "write -repair=local, not -repair local", stderr); !ok {
		return status
	}
	cfg, err := one.config(*cfgPath, false)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl verify: %v\n", err)
		return 2
	}
	lc, err := pickLink(cfg, *linkName)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl verify: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v := &verifier{out: stdout, tolerance: tol.Milliseconds(), maxDiffs: *maxDiffs, repair: repair.side,
		progress: newProgressLine(stderr)}
	return v.run(ctx, lc)
}

func pickLink(cfg *config.Config, name string) (config.Link, error) {
	var names []string
	for _, l := range cfg.Links {
		if l.Name == name || name == "" && len(cfg.Links) == 1 {
			return l, nil
		}
		names = append(names, l.Name)
	}
	if name == "" {
		return config.Link{}, fmt.Errorf("%s has %d links: choose one with -link (%s)", cfg.Path, len(cfg.Links), strings.Join(names, ", "))
	}
	return config.Link{}, fmt.Errorf("%s has no link %q (it has: %s)", cfg.Path, name, strings.Join(names, ", "))
}

// verifier compares (and repairs) one link's namespace.
type verifier struct {
	out       io.Writer
	tolerance int64 // ms
	maxDiffs  int
	repair    string // "", "remote" or "local": the side made equal
	progress  *progressLine

	compared, differ atomic.Int64
	byKind           map[string]int64
	printed          int
	repaired         int64
}

func (v *verifier) run(ctx context.Context, lc config.Link) int {
	lc = lc.WithDefaults()
	sides, err := store.Open(link.StoreOptions(lc, lc.Workers+2))
	if err != nil {
		fmt.Fprintf(v.progress.w, "redisrepl verify: %v\n", err)
		return 2
	}
	defer sides.Close()
	local, remote := sides.Local, sides.Remote
	v.byKind = make(map[string]int64)
	src, dst := local, remote
	if v.repair == "local" {
		src, dst = remote, local
	}
	start := time.Now()
	stopProgress := v.progress.run(start, &v.compared, &v.differ)
	err = store.Compare(ctx, local, remote, nil, func(keys [][]byte, ls, rs []store.Summary) error {
		var differ [][]byte
		for i, k := range keys {
			if kind, detail := v.classify(ls[i], rs[i]); kind != "" {
				v.byKind[kind]++
				differ = append(differ, k)
				v.print(kind, k, detail)
			}
		}
		v.compared.Add(int64(len(keys)))
		v.differ.Add(int64(len(differ)))
		if v.repair != "" && len(differ) > 0 {
			if err := store.CopyKeys(ctx, src, dst, differ); err != nil {
				return &repairError{err}
			}
			v.repaired += int64(len(differ))
		}
		return nil
	})
	stopProgress()
	took := time.Since(start)
	v.summary(lc, took, err == nil)
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(v.progress.w, "redisrepl verify: interrupted")
		return 2
	case err != nil:
		what := "could not compare"
		var re *repairError
		if errors.As(err, &re) {
			what, err = "repair failed", re.err
		}
		if k := webdis.KindOf(err); k != webdis.KindUnknown {
			what += " (" + k.String() + ")"
		}
		fmt.Fprintf(v.progress.w, "redisrepl verify: link %q: %s: %v\n", lc.Name, what, err)
		return 2
	case v.differ.Load() > 0 && v.repair == "":
		return 1
	}
	return 0
}

type repairError struct{ err error }

func (e *repairError) Error() string { return e.err.Error() }

// classify names the difference between two summaries of a key, "" if none.
func (v *verifier) classify(l, r store.Summary) (kind, detail string) {
	switch {
	case l.Type == "none" && r.Type == "none": // gone on both sides meanwhile
		return "", ""
	case l.Type == "none":
		return "missing locally", r.Type
	case r.Type == "none":
		return "missing remotely", l.Type
	case l.Type != r.Type:
		return "type differs", "local " + l.Type + ", remote " + r.Type
	case l.Digest == "" || l.Digest != r.Digest:
		return "value differs", l.Type
	}
	if !dedup.SameExpiry(l.ExpireAt, r.ExpireAt, v.tolerance) {
		return "ttl differs", "local " + expiry(l.ExpireAt) + ", remote " + expiry(r.ExpireAt)
	}
	return "", ""
}

func expiry(atMs int64) string {
	if atMs == 0 {
		return "never expires"
	}
	return "expires in " + time.Until(time.UnixMilli(atMs)).Round(time.Millisecond).String()
}

func (v *verifier) print(kind string, key []byte, detail string) {
	v.printed++
	switch {
	case v.printed <= v.maxDiffs:
		v.progress.clear()
		fmt.Fprintf(v.out, "%s: %q (%s)\n", kind, key, detail)
	case v.printed == v.maxDiffs+1:
		v.progress.clear()
		fmt.Fprintf(v.out, "... more differences are counted but not printed (-max-diffs %d)\n", v.maxDiffs)
	}
}

func (v *verifier) summary(lc config.Link, took time.Duration, complete bool) {
	n, d := v.compared.Load(), v.differ.Load()
	rate := float64(n) / max(took.Seconds(), 1e-3)
	incomplete := ""
	if !complete {
		incomplete = "INCOMPLETE: only "
	}
	fmt.Fprintf(v.out, "link %q, namespace %q: %s%d keys compared in %v (%.0f keys/s): ",
		lc.Name, lc.Namespace, incomplete, n, took.Round(time.Millisecond), rate)
	switch {
	case d == 0 && complete:
		fmt.Fprintln(v.out, "no differences")
		return
	case d == 0:
		fmt.Fprintln(v.out, "no differences so far")
		return
	}
	fmt.Fprintf(v.out, "%d differences\n", d)
	for _, k := range diffKinds {
		if c := v.byKind[k]; c > 0 {
			fmt.Fprintf(v.out, "  %-17s %d\n", k+":", c)
		}
	}
	if v.repair != "" {
		from := map[string]string{"remote": "local side", "local": "remote"}[v.repair]
		fmt.Fprintf(v.out, "repaired %d keys: copied from the %s to the %s\n", v.repaired, from, v.repair)
	}
}

// progressEvery is how often verify reports its progress.
const progressEvery = 2 * time.Second

// progressLine writes progress to stderr: on a terminal as one line updated
// in place, otherwise a line each time.
type progressLine struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	shown bool // a line is on the terminal, without a newline
}

func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w)}
}

// run reports every progressEvery until the returned function is called.
func (p *progressLine) run(start time.Time, compared, differ *atomic.Int64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			n := compared.Load()
			rate := float64(n) / time.Since(start).Seconds()
			line := fmt.Sprintf("verify: %d keys compared, %d differences, %.0f keys/s, %v elapsed",
				n, differ.Load(), rate, time.Since(start).Round(time.Second))
			p.mu.Lock()
			if p.tty {
				fmt.Fprint(p.w, "\r"+line+"\x1b[K")
				p.shown = true
			} else {
				fmt.Fprintln(p.w, line)
			}
			p.mu.Unlock()
		}
	}()
	return func() {
		close(done)
		<-finished
		p.clear()
	}
}

// clear removes the progress line from the terminal before other output.
func (p *progressLine) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}
