// Package link is one replication link: the namespace of a local Redis kept
// equal to the same namespace of a remote Redis reached through Webdis.
// docs/ARCHITECTURE.md describes the whole path; in short, a change travels
// through:
//
//	side.go       the two sides of a link, each a side value
//	subscribe.go  keyspace events → the dirty set (dirty.go), never blocking
//	sync.go       workers (run.go) take dirty keys in batches, read them,
//	              decide what to copy (dedup.Decide in direction both) and
//	              copy it
//	link/store    one side's whole-key reads and atomic writes
//
// resync.go compares both namespaces (store.Compare) after anything that may
// have lost events (start, reconnect, overflow, a restarted or flushed side)
// and marks what differs dirty, so the same workers repair it. notify.go
// turns keyspace notifications on; runids.go and syncstate.go keep what
// direction both must remember across restarts.
package link

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// State is where a link stands.
type State string

const (
	Starting  State = "starting"  // created, not yet resynced
	Resyncing State = "resyncing" // comparing both sides after a gap
	Live      State = "live"      // replicating events as they come
	Degraded  State = "degraded"  // an error met; retrying with backoff
	Stopped   State = "stopped"   // Run returned
)

// Link replicates one namespace. Create it with New, run it with Run.
type Link struct {
	cfg    config.Link
	log    zerolog.Logger
	pool   *store.Pool    // to the local Redis
	client *webdis.Client // to the hub, through Webdis
	// The two sides (side.go), and what they share: the dirty set, the
	// synced states, the policy (cfg).
	local, remote *side
	dirty         *dirtySet
	synced        *dedup.Table
	Stats         Stats

	standing standing    // where the link stands, the last error met
	rs       resyncState // resyncs asked for and done (resync.go)
	work     work        // the workers' shared state
	reset    localReset  // a kept local reset (direction push)
	persist  syncPersist // the sync state's files (syncstate.go)
	shared   shared      // with the other links of a Hubs (hubs.go); zero for a link of its own
}

// work is what the workers of a link share.
type work struct {
	takeMu  sync.Mutex // one worker at a time waits for keys (worker)
	pace    pace       // the workers' backoff after a failed write
	retries keyRetries // keys that failed alone (keyerrors.go)
}

// standing is where a link stands, and the last error it met.
type standing struct {
	state atomic.Value // a State

	mu      sync.Mutex
	lastErr string
	errAt   time.Time
}

func (s *standing) lastError() (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.errAt
}

// both says whether the link copies in both directions.
func (l *Link) both() bool { return l.cfg.Direction == config.Both }

// Name is the link's name.
func (l *Link) Name() string { return l.cfg.Name }

// State is where the link stands.
func (l *Link) State() State { return l.standing.state.Load().(State) }

// LastError is the last error the link met, "" if none.
func (l *Link) LastError() string {
	e, _ := l.standing.lastError()
	return e
}

// Idle says whether no key is waiting or being copied.
func (l *Link) Idle() bool { return l.dirty.Idle() }

// Pending is the number of dirty keys waiting.
func (l *Link) Pending() int { return l.dirty.Len() }

func (l *Link) setState(s State) {
	if old := l.standing.state.Swap(s); old != s {
		l.log.Info().Str("from", string(old.(State))).Str("to", string(s)).Msg("link state")
	}
}

// fail reports an error: counted, logged (its message cut to logErrMax:
// messages can hold key names of any length), and kept as LastError.
func (l *Link) fail(err error, what string) {
	l.noteErr(err, what)
	ev := l.log.Error().Str("error", truncate(err.Error(), logErrMax)).Str("op", what)
	if k := webdis.KindOf(err); k != webdis.KindUnknown {
		ev = ev.Str("kind", k.String())
	}
	ev.Msg("replication error")
}

// noteErr counts err and keeps it as LastError, without logging it.
func (l *Link) noteErr(err error, what string) {
	l.Stats.Errors.Add(1)
	l.standing.mu.Lock()
	l.standing.lastErr, l.standing.errAt = what+": "+truncate(err.Error(), logErrMax), time.Now()
	l.standing.mu.Unlock()
}

// requestResync asks for a full comparison of both sides. With forget, a
// side lost its data (it was flushed): the states last synced no longer say
// who changed what (see runids.go).
func (l *Link) requestResync(forget bool) {
	if forget {
		l.rs.forget.Store(true)
	}
	select {
	case l.rs.req <- struct{}{}:
	default:
	}
}

// Resync asks for a comparison of both sides now (as after any gap).
func (l *Link) Resync() { l.requestResync(false) }

// resyncInfo is the outcome of the last resync.
type resyncInfo struct {
	mu       sync.Mutex
	at       time.Time
	outcome  string
	duration time.Duration
}

func (r *resyncInfo) set(at time.Time, took time.Duration, outcome string) {
	r.mu.Lock()
	r.at, r.duration, r.outcome = at, took, outcome
	r.mu.Unlock()
}

func (r *resyncInfo) get() (at time.Time, outcome string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at, r.outcome, r.duration
}

// resyncState is what a link keeps of its resyncs.
type resyncState struct {
	req          chan struct{} // a resync is asked for (requestResync)
	flushSuspect chan struct{} // a shared flush probe found keys gone (hubs.go)
	forget       atomic.Bool   // the resync asked for must forget the synced states
	runIDs       runIDs        // of both Redis servers, as the last resync saw them
	bar          io.Writer     // where resyncs draw a progress bar; nil = none
	lastKeys     int           // keys the last resync compared: the next one's expected total
	last         resyncInfo    // the outcome of the last one, for /status
}

// syncPersist is what a link keeps of its sync state's files.
type syncPersist struct {
	lock  *dedup.StateLock // the sync state is this link's until Run returns
	saved uint64           // synced.Changes() when the sync state was last saved
	off   bool             // the files could be neither read nor moved aside: not saved
}

type runIDs struct {
	local, remote string // as of the last successful resync
	seenL, seenR  string // as read by the resync under way
	loaded        bool
	infoRefused   bool // the local Redis refuses INFO (said once)
	// localRestarted: the last check found the local run_id changed since
	// the last successful resync (localreset.go uses it).
	localRestarted bool
}

// localReset is a push link's kept local reset.
type localReset struct {
	mu    sync.Mutex
	since time.Time // zero: none
	kept  int       // keys only the hub holds, at the last resync
	// suspect: the local side was found flushed (watchRemote): the next
	// resync treats keys only on the hub as a local reset.
	suspect atomic.Bool
}

// LocalResetStatus is what /status shows of a kept local reset.
type LocalResetStatus struct {
	Since    time.Time `json:"since"`
	KeptKeys int       `json:"kept_keys"` // keys only the hub holds, kept there
	Repair   string    `json:"repair"`
}

func (r *localReset) status() *LocalResetStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since.IsZero() {
		return nil
	}
	return &LocalResetStatus{Since: r.since, KeptKeys: r.kept,
		Repair: "redisrepl verify -repair=local restores the local side from the hub; redisrepl verify -repair mirrors the local side to the hub"}
}

func (r *localReset) active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.since.IsZero()
}

// side is the link's side s.
func (l *Link) side(s Side) *side {
	if s == RemoteSide {
		return l.remote
	}
	return l.local
}
