package link

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
)

// A local reset (docs/ARCHITECTURE.md, "Local reset"): in direction push
// the hub mirrors the local namespace, so a key only the hub holds is
// normally deleted there. But when the local namespace is found empty while
// the hub holds keys of it, the local Redis most likely restarted without
// its data, or was flushed: the hub's copy may be the lab's only one. A
// link never destroys what it cannot restore, so on_local_reset decides:
//
//	keep     (default) the hub's copy is kept; new local writes are copied;
//	         the link says so (log, /status, /healthz) until the operator
//	         restores the local side (redisrepl verify -repair=local) or
//	         mirrors it (redisrepl verify -repair). The state survives
//	         restarts of redisrepl, in <state_file>.local-reset.
//	mirror   the hub's keys are deleted, as for any key deleted locally.
//	restore  the hub's keys are copied back to the local side, each only
//	         if the local side still lacks it.
//
// A reset is the local namespace found empty while the hub holds keys of
// it, or keys only on the hub after the local Redis restarted (a new
// run_id) or was flushed. Its state is persisted as soon as it is found,
// and ends when a complete resync finds no key that only the hub holds.

func (l *Link) localResetFile() string { return l.StateFile() + ".local-reset" }

// loadLocalReset reads a reset kept by an earlier run of the link.
func (l *Link) loadLocalReset() {
	data, err := os.ReadFile(l.localResetFile())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			l.fail(err, "read the local reset state")
		}
		return
	}
	f := strings.SplitN(string(data), "\n", 3)
	if len(f) < 2 || f[0] != l.identity() {
		return // another pair of servers: not ours
	}
	since, _ := time.Parse(time.RFC3339Nano, f[1])
	l.reset.mu.Lock()
	l.reset.since = since
	l.reset.mu.Unlock()
	l.log.Warn().Time("since", since).Msg("a local reset is still kept: the hub's keys that the local side lacks are not deleted")
}

// enterLocalReset enters the reset state, persisted at once (before
// anything is kept or restored: a resync cut short, or a restart of
// redisrepl, must find it), and says so.
func (l *Link) enterLocalReset() {
	l.reset.mu.Lock()
	first := l.reset.since.IsZero()
	if first {
		l.reset.since = time.Now()
	}
	since := l.reset.since
	l.reset.mu.Unlock()
	if !first {
		return
	}
	_ = os.MkdirAll(filepath.Dir(l.localResetFile()), 0o700)
	data := l.identity() + "\n" + since.Format(time.RFC3339Nano) + "\n"
	if err := os.WriteFile(l.localResetFile(), []byte(data), 0o600); err != nil {
		l.fail(err, "save the local reset state (it is kept in memory only)")
	}
	l.log.Warn().Str("on_local_reset", string(l.cfg.OnLocalReset)).
		Msg("a local reset: the local Redis restarted, was flushed, or its namespace is empty, while the hub holds keys it lacks")
}

// keepLocalReset reports the kept state with kept keys only on the hub.
func (l *Link) keepLocalReset(kept int) {
	l.enterLocalReset()
	l.reset.mu.Lock()
	l.reset.kept = kept
	l.reset.mu.Unlock()
	l.fail(fmt.Errorf("the local side lacks %d keys the hub holds (the local Redis restarted without its data, or was flushed?): "+
		"the hub's copy is kept (on_local_reset = \"keep\"); new local writes are copied; "+
		"'redisrepl verify -repair=local' restores the local side, 'redisrepl verify -repair' empties the hub's copy", kept), "local reset")
	l.setState(Degraded)
}

// endLocalReset leaves the kept state: no key is only on the hub any more.
func (l *Link) endLocalReset() {
	l.reset.mu.Lock()
	was := !l.reset.since.IsZero()
	l.reset.since, l.reset.kept = time.Time{}, 0
	l.reset.mu.Unlock()
	if was {
		if err := os.Remove(l.localResetFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.fail(err, "remove the local reset state")
		}
		l.log.Info().Msg("the local reset is resolved: both sides hold the same keys again; the hub mirrors the local side")
	}
}

// resetPolicy sorts the keys a push resync found only on the hub: the
// keys to delete there as usual, and how many are kept. lost says the local
// side lost data: its namespace had no key so far (phase one of the
// comparison is over when such keys come), or its Redis restarted or was
// flushed since the last resync. With restore the keys are copied back,
// each only if the local side still lacks it.
func (l *Link) resetPolicy(ctx context.Context, only [][]byte, lost bool, kept *int) ([][]byte, error) {
	if len(only) == 0 || l.both() || !(lost || l.reset.active()) || l.cfg.OnLocalReset == config.MirrorReset {
		return only, nil
	}
	l.enterLocalReset()
	if l.cfg.OnLocalReset == config.RestoreLocal {
		l.log.Warn().Int("keys", len(only)).Msg("the local side lacks keys the hub holds: restoring them locally (on_local_reset = \"restore\")")
		return nil, store.RestoreMissing(ctx, l.remote.st, l.local.st, only)
	}
	*kept += len(only)
	return nil, nil
}
