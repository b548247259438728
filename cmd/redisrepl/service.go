package main

import (
	"context"
	"sync"
	"syscall"
	"time"

	"os"
	"os/signal"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
)

// service is the supervisor: it runs one link per [[link]] of the
// configuration and, on reload, starts added links, stops removed ones and
// restarts changed ones (a changed setting or certificate file), leaving the
// others alone. A restarted link loses no change: it resyncs when it starts.
type service struct {
	log zerolog.Logger

	mu      sync.Mutex
	links   map[string]*running
	gen     int   // configuration generation: 1 for the first, +1 per applied reload
	loadErr error // the last reload's error, nil when the file in force is the last read
	reload  chan *config.Config
}

type running struct {
	link        *link.Link
	fingerprint string
	cancel      context.CancelFunc
	done        chan struct{}
}

func newService(log zerolog.Logger) *service {
	return &service{
		log:    log,
		links:  make(map[string]*running),
		reload: make(chan *config.Config, 1),
	}
}

// run applies cfg and supervises until ctx is done, then stops every link
// (each lets its writes in flight finish).
func (s *service) run(ctx context.Context, cfg *config.Config) error {
	if err := s.apply(ctx, cfg); err != nil {
		s.stopAll()
		return err
	}
	for {
		select {
		case <-ctx.Done():
			s.log.Info().Msg("stopping")
			s.stopAll()
			return nil
		case c := <-s.reload:
			if err := s.apply(ctx, c); err != nil {
				s.log.Error().Err(err).Msg("reload failed; links that could not start are not running")
			}
		}
	}
}

// watch reloads the file at path when it changes or on SIGHUP. A file that
// does not validate is reported and the running links keep going.
func (s *service) watch(ctx context.Context, path string) {
	changed := func(c *config.Config, err error) {
		s.mu.Lock()
		s.loadErr = err
		s.mu.Unlock()
		if err != nil {
			s.log.Error().Err(err).Str("file", path).Msg("configuration not reloaded: the running links keep going")
			return
		}
		select {
		case <-s.reload: // a newer one replaces a pending one
		default:
		}
		s.reload <- c
	}
	go func() {
		if err := config.Watch(ctx, path, 300*time.Millisecond, changed); err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Str("file", path).Msg("cannot watch the configuration file; SIGHUP still reloads it")
		}
	}()
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info().Str("file", path).Msg("SIGHUP: reloading")
				changed(config.Load(path))
			}
		}
	}()
}

// apply makes the running links those of cfg.
func (s *service) apply(ctx context.Context, cfg *config.Config) error {
	want := make(map[string]config.Link, len(cfg.Links))
	for _, l := range cfg.Links {
		want[l.Name] = l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for name, r := range s.links {
		if l, ok := want[name]; !ok || l.Fingerprint() != r.fingerprint {
			s.log.Info().Str("link", name).Bool("removed", !ok).Msg("stopping link")
			r.cancel()
			<-r.done
			delete(s.links, name)
		}
	}
	var firstErr error
	for _, l := range cfg.Links {
		if _, ok := s.links[l.Name]; ok {
			continue
		}
		lk, err := link.New(l, s.log)
		if err != nil {
			s.log.Error().Err(err).Msg("cannot start link")
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		r := &running{link: lk, fingerprint: l.Fingerprint(), cancel: cancel, done: make(chan struct{})}
		s.links[l.Name] = r
		go func() {
			defer close(r.done)
			if err := lk.Run(lctx); err != nil {
				s.log.Error().Err(err).Str("link", lk.Name()).Msg("link failed")
			}
		}()
	}
	s.log.Info().Int("generation", s.gen).Int("links", len(s.links)).Msg("configuration applied")
	return firstErr
}

func (s *service) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.links {
		r.cancel()
	}
	for name, r := range s.links {
		<-r.done
		delete(s.links, name)
	}
}
