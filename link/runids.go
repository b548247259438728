package link

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// A Redis that restarted (its run_id changed) may have lost its data: a
// hub without persistence comes back empty. To a link in direction both,
// keys missing there would look deleted since the last sync, and the deletes
// would be copied to the other side. So each resync compares both run_ids
// with those of the last successful resync (kept beside the sync state,
// across restarts of redisrepl, with the identity of the link's two sides:
// a state file of another pair of Redis servers is not trusted either).
// When they differ, the synced states are forgotten: what only one side has
// is copied to the other. Keys deleted on a side that restarted with its data
// come back: keeping data wins over losing it.

// identity names the link's two sides and namespace.
func (l *Link) identity() string {
	return fmt.Sprintf("%s/%d %s/%d %q", l.cfg.LocalAddr, l.cfg.LocalDB, l.client.URL(), l.cfg.RemoteDB, l.cfg.Namespace)
}

// check reads both run_ids and says whether a side restarted (or the state
// file is another pair's) since the last successful resync.
func (r *runIDs) check(ctx context.Context, l *Link) (bool, error) {
	lv, err := l.pool.Do(ctx, []byte("INFO"), []byte("server"))
	switch {
	case err != nil && answered(err):
		// An ACL without INFO (+@all -@dangerous): a restart of the local
		// Redis is then noticed by its subscription only. Say it once.
		if !r.infoRefused {
			r.infoRefused = true
			l.log.Warn().Err(err).Msg("the local Redis refuses INFO: its restarts are noticed by the event subscription only; allow INFO for redisrepl (see README, 'What each side must allow')")
		}
	case err != nil:
		return false, err
	}
	li, _ := redis.String(lv, nil)
	r.seenL = runID(li)
	r.seenR, _ = l.remoteRunID(ctx) // Webdis's ACL may forbid INFO: then the probe of known keys is all there is
	if !r.loaded && l.both() {
		r.loaded = true
		if !r.load(l.runIDFile(), l.identity()) && l.synced.Len() > 0 {
			l.log.Warn().Str("file", l.runIDFile()).Msg("the sync state belongs to other Redis servers or namespace: forgetting it")
			return true, nil
		}
	}
	restarted := false
	r.localRestarted = r.local != "" && r.seenL != "" && r.seenL != r.local
	if r.localRestarted {
		if l.both() {
			l.log.Warn().Msg("the local Redis restarted: what only one side has is copied to the other, nothing is deleted for being missing")
		} else {
			l.log.Warn().Str("on_local_reset", string(l.cfg.OnLocalReset)).
				Msg("the local Redis restarted: if its namespace came back empty, the hub's copy is handled as on_local_reset says (keep: kept, not deleted)")
		}
		restarted = true
	}
	if r.remote != "" && r.seenR != "" && r.seenR != r.remote {
		l.log.Warn().Msg("the remote Redis restarted: what only one side has is copied to the other, nothing is deleted for being missing")
		restarted = true
	}
	return restarted, nil
}

// commit takes the run_ids a resync saw as the reference, and saves them.
func (r *runIDs) commit(l *Link) {
	if r.seenL == r.local && r.seenR == r.remote {
		return
	}
	r.local, r.remote = r.seenL, r.seenR
	if l.both() {
		_ = os.MkdirAll(filepath.Dir(l.runIDFile()), 0o700)
		data := l.identity() + "\n" + r.local + "\n" + r.remote + "\n"
		if err := os.WriteFile(l.runIDFile(), []byte(data), 0o600); err != nil {
			l.fail(err, "save run ids")
		}
	}
}

// load reads the run_ids saved for identity; false when the file is of
// another identity (or unreadable).
func (r *runIDs) load(path, identity string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return os.IsNotExist(err)
	}
	f := strings.Split(string(data), "\n")
	if len(f) < 3 || f[0] != identity {
		return false
	}
	r.local, r.remote = f[1], f[2]
	return true
}

func (l *Link) runIDFile() string { return l.StateFile() + ".runids" }
