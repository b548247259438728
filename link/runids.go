package link

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// A Redis that restarted (its run_id changed) may have lost its data: a
// hub without persistence comes back empty. To a link in direction both,
// keys missing there would look deleted, and the deletes would be copied to
// the other side. So each resync compares both run_ids with those of the
// last successful resync (kept beside the sync state, across restarts of
// redisrepl), and for a side that restarted, a key it lacks is refilled
// from the other side instead. A restart that kept its data and had keys
// deleted meanwhile gets them back: keeping data wins over losing it.

type runIDs struct {
	local, remote string // as of the last successful resync
	seenL, seenR  string // as read by the resync under way
}

// check reads both run_ids and says which sides restarted since the last
// successful resync.
func (r *runIDs) check(ctx context.Context, l *Link) (uint8, error) {
	lv, err := l.pool.Do(ctx, []byte("INFO"), []byte("server"))
	if err != nil {
		return 0, err
	}
	li, _ := redis.String(lv, nil)
	r.seenL = runID(li)
	r.seenR, _ = l.remoteRunID(ctx) // Webdis's ACL may forbid INFO: then the probe of known keys is all there is
	if r.local == "" && r.remote == "" && l.direction() == "both" {
		r.load(l.runIDFile())
	}
	var restarted uint8
	if r.local != "" && r.seenL != "" && r.seenL != r.local {
		l.log.Warn().Msg("the local Redis restarted: keys it lacks are refilled from the remote, not deleted there")
		restarted |= refillLocal
	}
	if r.remote != "" && r.seenR != "" && r.seenR != r.remote {
		l.log.Warn().Msg("the remote Redis restarted: keys it lacks are refilled from the local side, not deleted here")
		restarted |= refillRemote
	}
	return restarted, nil
}

// commit takes the run_ids a resync saw as the reference, and saves them.
func (r *runIDs) commit(l *Link) {
	if r.seenL == r.local && r.seenR == r.remote {
		return
	}
	r.local, r.remote = r.seenL, r.seenR
	if l.direction() == "both" {
		_ = os.MkdirAll(filepath.Dir(l.runIDFile()), 0o700)
		if err := os.WriteFile(l.runIDFile(), []byte(r.local+"\n"+r.remote+"\n"), 0o600); err != nil {
			l.fail(err, "save run ids")
		}
	}
}

func (r *runIDs) load(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if f := strings.Split(string(data), "\n"); len(f) >= 2 {
		r.local, r.remote = f[0], f[1]
	}
}

func (l *Link) runIDFile() string { return l.StateFile() + ".runids" }
