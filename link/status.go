package link

import (
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
)

// Status is what /status shows of a link.
type Status struct {
	Name       string           `json:"name"`
	State      State            `json:"state"`
	Direction  config.Direction `json:"direction"`
	LastError  string           `json:"last_error,omitempty"`
	ErrorAt    time.Time        `json:"last_error_at,omitzero"`
	DirtyKeys  int              `json:"dirty_keys"`
	SyncedKeys int              `json:"synced_keys"` // keys the dedup table remembers
	LagP50Ms   float64          `json:"lag_p50_ms"`
	LagP99Ms   float64          `json:"lag_p99_ms"`

	ResyncStatus
	Counts

	WritePath  store.Path        `json:"write_path"` // "eval" (atomic, batched) or "plain" (fallback)
	Sides      []SideStatus      `json:"sides"`
	LocalReset *LocalResetStatus `json:"local_reset,omitempty"`
}

// ResyncStatus is what /status shows of the last resync.
type ResyncStatus struct {
	LastResync         time.Time `json:"last_resync,omitzero"`
	LastResyncOutcome  string    `json:"last_resync_outcome,omitempty"`
	LastResyncDuration string    `json:"last_resync_duration,omitempty"`
}

// Counts are the link's Stats as /status shows them.
type Counts struct {
	EventsLocal  int64 `json:"events_local"`
	EventsRemote int64 `json:"events_remote"`
	KeysToRemote int64 `json:"keys_to_remote"`
	KeysToLocal  int64 `json:"keys_to_local"`
	KeysSkipped  int64 `json:"keys_skipped"`
	Requests     int64 `json:"remote_requests"`
	Errors       int64 `json:"errors"`
	KeyErrors    int64 `json:"key_errors"`
	Resyncs      int64 `json:"resyncs"`
	KeysRepaired int64 `json:"keys_repaired"`
	EventLapses  int64 `json:"event_lapses"`
}

// Status returns the link's current status.
func (l *Link) Status() Status {
	lastErr, errAt := l.standing.lastError()
	rat, rout, rdur := l.rs.last.get()
	s := &l.Stats
	st := Status{
		Name: l.cfg.Name, State: l.State(), Direction: l.cfg.Direction,
		LastError: lastErr, ErrorAt: errAt,
		DirtyKeys: l.dirty.Len(), SyncedKeys: l.synced.Len(),
		LagP50Ms: quantileMs(s.Lag, 0.5), LagP99Ms: quantileMs(s.Lag, 0.99),
		ResyncStatus: ResyncStatus{LastResync: rat, LastResyncOutcome: rout},
		Counts: Counts{
			EventsLocal: s.EventsLocal.Load(), EventsRemote: s.EventsRemote.Load(),
			KeysToRemote: s.KeysToRemote.Load(), KeysToLocal: s.KeysToLocal.Load(),
			KeysSkipped: s.KeysSkipped.Load(), Requests: s.RemoteRequests.Load(),
			Errors: s.Errors.Load(), KeyErrors: s.KeyErrors.Load(), Resyncs: s.Resyncs.Load(), KeysRepaired: s.Repaired.Load(),
			EventLapses: s.EventLapses.Load(),
		},
		WritePath:  l.remote.st.Path(),
		Sides:      []SideStatus{l.local.health.status(LocalSide), l.remote.health.status(RemoteSide)},
		LocalReset: l.reset.status(),
	}
	if !rat.IsZero() {
		st.LastResyncDuration = rdur.Round(time.Millisecond).String()
	}
	return st
}

// fallbackMsg is logged once when the remote refuses scripts.
const fallbackMsg = "the hub refuses scripts (EVAL): falling back to plain commands; " +
	"each key is still written atomically, but replication is slower, reads are not atomic, " +
	"streams are not replicated, and listing the namespace uses KEYS; /status shows write_path: plain"

// reportFallback is the remote Store's OnFallback: it says once, as a
// warning, that the link now uses plain commands, and why.
func (l *Link) reportFallback(err error) {
	l.log.Warn().Err(err).Str("write_path", store.PathPlain.String()).Msg(fallbackMsg)
}
