package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/gateway"
)

const gatewayUsage = `Usage:
  redisrepl gateway [-config FILE] [-log-level LEVEL]
      Serve the hub: a Webdis-compatible HTTPS server with mutual TLS in
      front of the hub Redis, where each lab's client certificate reaches
      only its own namespaces (its [[tenant]]). Every tenant has a Redis ACL
      user of its own, set by the gateway from the file.

      The file (default /etc/redisrepl-gateway.toml) is reloaded when it
      changes or on SIGHUP: added tenants are served, removed ones refused
      (their streams cut), changed ones updated; the others, and their open
      event streams, are left alone. An invalid edit is reported, shown in
      /status, and changes nothing. Changes of [gateway] other than the
      certificate files take effect at the next start.

      With [gateway] metrics_addr, serves over HTTP:
        /         the status page: the hub and every tenant, for a browser
        /healthz  200 "ok" when the hub answers and every tenant's ACL user
                  is set, else 503 with the reasons
        /status   JSON: file, generation, last reload error, tenants
        /metrics  Prometheus metrics per tenant

SIGINT or SIGTERM stop cleanly (exit status 0).
Exit status: 0 stopped cleanly, 1 failed while running, 2 bad configuration or flags.

Flags:
`

// DefaultGatewayPath is where "redisrepl gateway" looks for its file.
const DefaultGatewayPath = "/etc/redisrepl-gateway.toml"

func gatewayCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redisrepl gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", DefaultGatewayPath, "configuration `file`")
	logLevel := fs.String("log-level", "", "debug|info|warn|error (overrides [gateway] log_level)")
	if status, ok := parseFlags(fs, args, gatewayUsage, "see redisrepl gateway -h", stderr); !ok {
		return status
	}
	cfg, err := config.LoadGateway(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl gateway: %v\n", err)
		return 2
	}
	level := cfg.LogLevel
	if *logLevel != "" {
		level = *logLevel
	}
	// One access log line per request: written through a buffer flushed
	// every 100 ms rather than a write(2) each (not on a terminal, where a
	// person reads them as they come).
	logOut := stderr
	if !isTerminal(stderr) {
		bw := newFlushWriter(stderr, 100*time.Millisecond)
		defer bw.Close()
		logOut = bw
	}
	log, err := newLogger(logOut, level)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl gateway: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gateway.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "redisrepl gateway: %v\n", err)
		return 2
	}
	if err := g.Start(ctx); err != nil {
		log.Error().Err(err).Msg("gateway cannot serve")
		return 1
	}
	defer g.Close()

	reload := func(c *config.Gateway, err error) {
		if err != nil {
			g.ReloadFailed(err)
			return
		}
		g.Apply(ctx, c)
	}
	go func() {
		if err := config.WatchGateway(ctx, cfg.Path, 300*time.Millisecond, reload); err != nil {
			log.Error().Err(err).Msg("cannot watch the configuration file; SIGHUP still reloads it")
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info().Msg("SIGHUP: reloading the configuration")
				reload(config.LoadGateway(cfg.Path))
			}
		}
	}()
	if cfg.MetricsAddr != "" {
		go serveGatewayMetrics(ctx, cfg.MetricsAddr, g)
	}
	<-ctx.Done()
	log.Info().Msg("gateway stopping")
	return 0
}

// serveGatewayMetrics serves /metrics, /healthz, /status and the status page, retrying the
// bind every 10 s if the address is taken.
func serveGatewayMetrics(ctx context.Context, addr string, g *gateway.Gateway) {
	srv := &http.Server{Handler: g.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	for ctx.Err() == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		}
		srv.Serve(ln)
	}
}

// flushWriter buffers writes and flushes them every period, and on Close.
type flushWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newFlushWriter(w io.Writer, period time.Duration) *flushWriter {
	f := &flushWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				f.mu.Lock()
				f.w.Flush()
				f.mu.Unlock()
			}
		}
	}()
	return f
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Write(p)
}

// Close flushes what is buffered and stops the flusher.
func (f *flushWriter) Close() error {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Flush()
}
