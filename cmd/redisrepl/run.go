package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
)

const runUsage = `Usage:
  redisrepl [run] [-config FILE] [-log-level LEVEL] [-metrics-addr HOST:PORT]
      Run every [[link]] of the TOML file FILE (default /etc/redisrepl.toml),
      reloading it when it changes or on SIGHUP: added links start, removed
      ones stop, changed ones (settings or certificate files) restart, the
      others are left alone; an invalid edit is reported and changes nothing.
      Certificate files are also re-read every 30s, so a renewed one is picked
      up without an edit. See README.md for the schema.

      With [service] metrics_addr (or -metrics-addr), serves over HTTP:
        /         the status page: every link at a glance, for a browser
        /healthz  200 "ok" when every link is live and the file in force is
                  the last one read, else 503 with the reasons
        /status   JSON: file, generation, last reload error, every link
        /metrics  Prometheus metrics

  redisrepl -raddr ADDR -haddr URL -cert FILE -key FILE -CA FILE -nam NAMESPACE [-rc]
            [-lCA FILE] [-lcert FILE -lkey FILE] [-state FILE]
      Run one link given on the command line (the original redisrepl form):
      replicate the keys of the local Redis at ADDR that start with NAMESPACE
      to Webdis at URL, presenting the client certificate FILE; with -rc also
      bring remote changes back. A local Redis over TLS (ADDR rediss://...)
      is verified against -lCA and shown the client certificate -lcert.
      The link's sync state is -state FILE, by default a file of
      $STATE_DIRECTORY (or /var/lib/redisrepl) named after NAMESPACE and a
      digest of ADDR, URL and NAMESPACE; it belongs to one process: a second
      one on the same state refuses to start, naming the holder's pid.

SIGINT or SIGTERM stop cleanly (writes in flight finish; exit status 0).
Exit status: 0 stopped cleanly, 1 failed while running, 2 bad configuration or flags.

Flags:
`

// runCmd is the service: "redisrepl run" and the original one-link flags.
func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redisrepl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath  = fs.String("config", "/etc/redisrepl.toml", "configuration `file`")
		logLevel = fs.String("log-level", "", "debug|info|warn|error (overrides [service] log_level)")
		metrics  = fs.String("metrics-addr", "", "serve /metrics, /healthz and /status on `host:port` (overrides [service] metrics_addr)")
		showVer  = fs.Bool("version", false, "print the version and exit")
		one      = addOneLinkFlags(fs)
		rc       = fs.Bool("rc", false, "one-link form: also replicate remote changes to the local Redis (direction both)")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVer {
		fmt.Fprintln(stdout, "redisrepl", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "redisrepl: unexpected argument %q (see redisrepl -h)\n", fs.Arg(0))
		return 2
	}

	oneLink := one.given() || *rc
	cfg, err := one.config(*cfgPath, *rc)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl: %v\n", err)
		return 2
	}
	level := cfg.Service.LogLevel
	if *logLevel != "" {
		level = *logLevel
	}
	log, err := newLogger(stderr, level)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc := newService(log, cfg.Path)
	if oneLink {
		svc.onHUP(ctx, func() (*config.Config, error) { return cfg, nil })
	} else {
		svc.watch(ctx, cfg.Path)
	}
	addr := cfg.Service.MetricsAddr
	if *metrics != "" {
		addr = *metrics
	}
	if addr != "" {
		// The server stops with the service: cancel ctx, wait for it.
		hctx, stopHTTP := context.WithCancel(ctx)
		waitHTTP := svc.serveHTTP(hctx, addr)
		defer waitHTTP()
		defer stopHTTP()
	}
	if err := svc.run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("redisrepl failed")
		return 1
	}
	return 0
}

// newLogger logs for a person on a terminal, as JSON lines otherwise.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "trace" || level == "fatal" || level == "panic" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if isTerminal(w) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// isTerminal says whether w is a terminal (for readable logs and progress
// bars rather than JSON lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
