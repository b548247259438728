package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
)

// recheckEvery is how often the supervisor recomputes every link's
// fingerprint without a reload, so that a certificate renewed in place (same
// path, new contents) restarts its link, and a link that could not start is
// tried again. It reads the three small PEM files of each link.
const recheckEvery = 30 * time.Second

// recheckPending is how often the supervisor re-checks while a running
// link's certificate, key or CA file cannot be used (a renewal tool replacing
// it non-atomically leaves it missing or half-written for moments): the link
// keeps running on what it loaded at start, and the file's return is noticed
// within this.
const recheckPending = time.Second

// service is the supervisor: it runs one link per [[link]] of the
// configuration and, on reload, starts added links, stops removed ones and
// restarts changed ones (a changed setting or certificate file: see
// config.Link.Fingerprint), leaving the others alone. A restarted link loses
// no change: it resyncs when it starts.
//
// A certificate, key or CA file of a running link that cannot be used for a
// while (missing, unreadable, half-written) does not stop the link: it holds
// its certificates in memory. The supervisor reports it (log, /status,
// /healthz) and re-checks every recheckPending; once the file is usable
// again, the link restarts if its contents changed and is left alone if not.
type service struct {
	log  zerolog.Logger
	path string // the configuration file; "command line" for the one-link form

	mu           sync.Mutex
	cfg          *config.Config      // the configuration in force
	links        map[string]*running // by link name
	failed       map[string]string   // links of cfg that could not start: the error
	starts       map[string]int      // how many times each link was started
	gen          int                 // configuration generation: 1 for the first, +1 per applied reload
	appliedAt    time.Time           // when cfg was applied
	loadErr      error               // the last reload's error, nil when the file in force is the last read
	loadErrAt    time.Time
	reloadErrors int  // reloads that failed since the start
	stopping     bool // the service is stopping
	reload       chan *config.Config
	poke         chan struct{}                  // re-check now: a reload was refused for a certificate file
	load         func() (*config.Config, error) // reads the file again; nil in the one-link form
	bar          io.Writer                      // a terminal for resync progress bars, or nil
	// hubs: links to the same hub (URL and certificate files) share its
	// HTTPS connections and its health probes (link/hubs.go).
	hubs *link.Hubs
}

type running struct {
	link        *link.Link
	cfg         config.Link
	fingerprint string
	started     time.Time
	cancel      context.CancelFunc
	done        chan struct{}
	// files is set while one of the link's certificate, key or CA files
	// cannot be used (a *config.FileError), since filesSince: the link runs
	// on what it loaded at start.
	files      error
	filesSince time.Time
}

func newService(log zerolog.Logger, path string) *service {
	var bar io.Writer
	if isTerminal(os.Stderr) {
		bar = os.Stderr // resyncs draw a progress bar
	}
	return &service{
		log:    log,
		path:   path,
		links:  make(map[string]*running),
		failed: make(map[string]string),
		starts: make(map[string]int),
		reload: make(chan *config.Config, 1),
		poke:   make(chan struct{}, 1),
		bar:    bar,
		hubs:   link.NewHubs(),
	}
}

// run applies cfg and supervises until ctx is done, then stops every link
// (each lets its writes in flight finish). It fails only when a link of the
// first configuration cannot start.
func (s *service) run(ctx context.Context, cfg *config.Config) error {
	if err := s.apply(ctx, cfg, true); err != nil {
		s.stopAll()
		return err
	}
	recheck := time.NewTimer(s.recheckDelay())
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			s.log.Info().Msg("stopping")
			s.stopAll()
			return nil
		case c := <-s.reload:
			if err := s.apply(ctx, c, true); err != nil {
				s.log.Error().Err(err).Msg("reload applied, but links that could not start are not running (retried every 30s)")
			}
		case <-s.poke:
			s.recheck(ctx)
			recheck.Reset(s.recheckDelay())
		case <-recheck.C:
			s.recheck(ctx)
			recheck.Reset(s.recheckDelay())
		}
	}
}

// recheckDelay is recheckPending while a running link's file cannot be
// used, recheckEvery otherwise.
func (s *service) recheckDelay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.links {
		if r.files != nil {
			return recheckPending
		}
	}
	return recheckEvery
}

// recheck re-applies the configuration in force, re-reading every link's
// files. When the last reload was refused only because of certificate, key
// or CA files, it also loads the file again, those files may be back: a
// success goes through the reload queue as a SIGHUP's does (a newer one
// queued meanwhile replaces it; run is not blocked on its own queue), an
// unchanged error is not reported again.
func (s *service) recheck(ctx context.Context) {
	s.mu.Lock()
	c, loadErr, load := s.cfg, s.loadErr, s.load
	s.mu.Unlock()
	if loadErr != nil && load != nil && config.IsFileError(loadErr) {
		switch nc, err := load(); {
		case err == nil:
			s.log.Info().Str("file", s.path).Msg("the certificate files the configuration was refused for load now: reloading it")
			go s.changed(nc, nil)
		case err.Error() != loadErr.Error():
			s.changed(nil, err)
		}
	}
	if err := s.apply(ctx, c, false); err != nil {
		s.log.Error().Err(err).Msg("links that could not start are still not running")
	}
}

// watch reloads the file at path when it changes or on SIGHUP. A file that
// does not validate is reported (log, /status, /healthz) and the running
// links keep going.
func (s *service) watch(ctx context.Context, path string) {
	go func() {
		if err := config.Watch(ctx, path, 300*time.Millisecond, s.changed); err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Str("file", path).Msg("cannot watch the configuration file; SIGHUP still reloads it")
		}
	}()
	s.mu.Lock()
	s.load = func() (*config.Config, error) { return config.Load(path) }
	s.mu.Unlock()
	s.onHUP(ctx, s.load)
}

// onHUP reloads on SIGHUP with load. The one-link form, which has no file,
// re-applies its flags: certificate files that changed are then picked up.
func (s *service) onHUP(ctx context.Context, load func() (*config.Config, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info().Str("file", s.path).Msg("SIGHUP: reloading")
				s.changed(load())
			}
		}
	}()
}

// changed hands a configuration read anew to run, or records why it could
// not be read. A file refused only for its certificate, key or CA files
// makes run re-check the running links' files at once, and load the file
// again once they are usable (see recheck).
func (s *service) changed(c *config.Config, err error) {
	s.setLoadErr(err)
	if err != nil {
		s.log.Error().Err(err).Str("file", s.path).Msg("configuration not reloaded: the running links keep going")
		if config.IsFileError(err) {
			select {
			case s.poke <- struct{}{}:
			default:
			}
		}
		return
	}
	select {
	case <-s.reload: // a newer one replaces a pending one
	default:
	}
	s.reload <- c
}

func (s *service) setLoadErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadErr = err
	if err != nil {
		s.loadErrAt = time.Now()
		s.reloadErrors++
	}
}

// apply makes the running links those of cfg: it stops the links that are
// no longer in cfg or whose fingerprint changed, then starts every link of
// cfg that is not running (new, changed, or failed to start before). A link
// whose fingerprint is unchanged is left alone, and so is a running link
// whose settings are unchanged but one of whose files cannot be used now
// (see service). reload says cfg was read anew (a new generation);
// otherwise apply only re-checks fingerprints.
func (s *service) apply(ctx context.Context, cfg *config.Config, reload bool) error {
	fps := make(map[string]string, len(cfg.Links))
	files := make(map[string]error, len(cfg.Links))
	byName := make(map[string]config.Link, len(cfg.Links))
	for _, l := range cfg.Links {
		// Both read the PEM files: outside the lock. The fingerprint
		// first: a file that comes back in between costs at most one
		// needless restart, never a link stopped for a missing file.
		fps[l.Name] = l.Fingerprint()
		files[l.Name] = l.CheckFiles()
		byName[l.Name] = l
	}
	s.mu.Lock()
	if reload {
		if s.cfg != nil && s.cfg.Service != cfg.Service {
			s.log.Warn().Msg("[service] settings (metrics_addr, log_level) changed: they take effect when redisrepl restarts")
		}
		s.gen++
		s.cfg, s.appliedAt = cfg, time.Now()
	}
	var stop []*running
	for name, r := range s.links {
		fp, ok := fps[name]
		switch ferr := files[name]; {
		case ok && ferr != nil && reflect.DeepEqual(byName[name], r.cfg):
			s.keepOnFileError(name, r, ferr)
		case !ok || fp != r.fingerprint:
			s.log.Info().Str("link", name).Bool("removed", !ok).Msg("stopping link")
			stop = append(stop, r)
			delete(s.links, name)
		case r.files != nil:
			s.log.Info().Str("link", name).Dur("after", time.Since(r.filesSince).Round(time.Millisecond)).
				Msg("the link's certificate files load again, unchanged: the link goes on")
			r.files = nil
		}
	}
	s.mu.Unlock()

	// Stop outside the lock, so that /status and /metrics keep answering
	// while writes in flight finish.
	for _, r := range stop {
		r.cancel()
	}
	for _, r := range stop {
		<-r.done
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.failed)
	var firstErr error
	started := 0
	for _, l := range cfg.Links {
		if _, ok := s.links[l.Name]; ok {
			continue
		}
		lk, err := s.hubs.New(l, s.log)
		if err == nil && s.bar != nil {
			lk.SetProgressBar(s.bar)
		}
		if err != nil {
			s.log.Error().Err(err).Str("link", l.Name).Msg("cannot start link")
			s.failed[l.Name] = err.Error()
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		r := &running{link: lk, cfg: l, fingerprint: fps[l.Name], started: time.Now(), cancel: cancel, done: make(chan struct{})}
		s.links[l.Name] = r
		s.starts[l.Name]++
		started++
		go func() {
			defer close(r.done)
			if err := lk.Run(lctx); err != nil {
				s.log.Error().Err(err).Str("link", lk.Name()).Msg("link failed")
			}
		}()
	}
	if reload || len(stop) > 0 || started > 0 {
		s.log.Info().Int("generation", s.gen).Int("links", len(s.links)).
			Int("stopped", len(stop)).Int("started", started).Msg("configuration applied")
	}
	return firstErr
}

// keepOnFileError keeps the running link r although one of its files
// cannot be used now, and reports it once per distinct problem. s.mu is
// held.
func (s *service) keepOnFileError(name string, r *running, err error) {
	if r.files != nil && r.files.Error() == err.Error() {
		return
	}
	if r.files == nil {
		r.filesSince = time.Now()
	}
	r.files = err
	ev := s.log.Warn().Str("link", name).Err(err)
	var fe *config.FileError
	if errors.As(err, &fe) {
		ev = ev.Str("file", fe.Path).Str("field", fe.Field)
	}
	ev.Msg("a certificate file of the link cannot be used: the link keeps running on the certificates it loaded, " +
		"and restarts if the file comes back with new contents")
}

// stopAll stops every link and waits for them, outside the lock so that
// the endpoints keep answering meanwhile.
func (s *service) stopAll() {
	s.mu.Lock()
	links := s.links
	s.links = make(map[string]*running)
	s.stopping = true
	s.mu.Unlock()
	for _, r := range links {
		r.cancel()
	}
	for _, r := range links {
		<-r.done
	}
}

// linkView is one link of the configuration in force, as the endpoints see
// it: running (r != nil), or not (failed says why, "" while it restarts).
type linkView struct {
	cfg        config.Link
	r          *running
	failed     string
	starts     int
	files      error // a file of the running link cannot be used now (running.files)
	filesSince time.Time
}

// serviceView is a consistent copy of the supervisor's state.
type serviceView struct {
	path         string
	gen          int
	appliedAt    time.Time
	loadErr      error
	loadErrAt    time.Time
	reloadErrors int
	stopping     bool
	links        []linkView // in the order of the file
}

func (s *service) view() serviceView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := serviceView{path: s.path, gen: s.gen, appliedAt: s.appliedAt,
		loadErr: s.loadErr, loadErrAt: s.loadErrAt, reloadErrors: s.reloadErrors, stopping: s.stopping}
	if s.cfg == nil {
		return v
	}
	for _, l := range s.cfg.Links {
		lv := linkView{cfg: l, r: s.links[l.Name], failed: s.failed[l.Name], starts: s.starts[l.Name]}
		if lv.r != nil {
			lv.cfg, lv.files, lv.filesSince = lv.r.cfg, lv.r.files, lv.r.filesSince
		}
		v.links = append(v.links, lv)
	}
	return v
}
