package link

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// Resync is anti-entropy: keyspace events are fire-and-forget, so after
// anything that may have lost some (the link starting, a reconnect, a dirty
// set overflow, a restarted or flushed hub) both namespaces are compared
// key by key and every difference is marked dirty for the workers, which
// copy the current local state. Digests are computed on each side
// (store.Compare), so only keys that differ travel. Memory is bounded by one
// SCAN page.
//
// Live events keep flowing meanwhile and cannot be overwritten by the
// resync: it only marks keys dirty; the copy always reads the current state.

// resyncLoop runs a resync whenever one is requested, when the dirty set
// overflows and every resync_interval.
func (l *Link) resyncLoop(ctx context.Context) {
	var every <-chan time.Time
	if d := l.cfg.ResyncInterval.Duration; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		every = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.rs.req:
		case <-every:
		case <-l.dirty.overflowed:
			// Its keys were dropped: only a resync finds them again. A
			// signal, not a poll: hundreds of idle links would wake for it.
			if !l.dirty.TakeOverflow() {
				continue
			}
			l.Stats.Overflows.Add(1)
			l.log.Warn().Int("max_dirty_keys", l.dirty.max).Msg("too many dirty keys: dropped them, resyncing the namespace instead")
		}
		forget := l.rs.forget.Swap(false)
		bo := newBackoff()
		for {
			err := l.resync(ctx, forget)
			if err == nil || ctx.Err() != nil {
				break
			}
			l.fail(err, "resync")
			l.setState(Degraded)
			if !sleepCtx(ctx, bo.next()) {
				return
			}
		}
	}
}

// resync compares both namespaces and marks what differs dirty (with the
// forget flag, see requestResync).
func (l *Link) resync(ctx context.Context, forget bool) error {
	restarted, err := l.rs.runIDs.check(ctx, l)
	if err != nil {
		return err
	}
	if forget || restarted {
		// Without a reliable last synced state, Decide copies what only one
		// side has to the other, and lets the policy settle the rest: no
		// key is deleted because a side lost it.
		l.synced.Clear()
	}
	// A routine resync (periodic, an overflow) of a live link leaves it
	// live: it keeps replicating meanwhile, and /healthz should not flap.
	if l.State() != Live {
		l.setState(Resyncing)
	}
	l.Stats.Resyncs.Add(1)
	// Every key that exists on either side is touched below; the synced
	// states of the others (keys gone from both sides, e.g. an experiment
	// reset while the link was down) are forgotten at the end, so that a
	// key written again later is not taken for one already synced.
	sweep := l.synced.BeginSweep()
	start := time.Now()
	p := progress{log: l.log, bar: l.rs.bar, name: l.cfg.Name, start: start, last: start, expected: l.rs.lastKeys}
	// The synced states of a page as they were before its summaries were
	// read: a worker may copy one of its keys meanwhile and record a newer
	// state, which the resync must not overwrite with the older one.
	var before []dedup.Entry
	var known []bool
	snapshot := func(keys [][]byte) {
		before, known = before[:0], known[:0]
		for _, k := range keys {
			e, ok := l.synced.Lookup(k)
			before, known = append(before, e), append(known, ok)
		}
	}
	localKeys, kept := 0, 0 // keys seen on the local side; keys kept on the hub (localreset.go)
	localLost := l.rs.runIDs.localRestarted || l.reset.suspect.Swap(false)
	err = store.Compare(ctx, l.local.st, l.remote.st, snapshot, func(keys [][]byte, local, remote []store.Summary) error {
		l.synced.Touch(keys)
		var differ, hubOnly [][]byte
		for i, k := range keys {
			if local[i].Type != "none" {
				localKeys++
			}
			switch {
			case local[i].Same(remote[i], dedup.ExpiryTolerance):
				if local[i].Type == "none" {
					l.synced.ForgetIf(k, before[i], known[i])
				} else {
					l.synced.RecordIf(k, before[i], known[i], local[i].Digest, local[i].ExpireAt)
				}
			case local[i].Type == "none" && remote[i].Type != "none":
				hubOnly = append(hubOnly, k)
			default:
				differ = append(differ, k)
			}
		}
		hubOnly, err := l.resetPolicy(ctx, hubOnly, localKeys == 0 || localLost, &kept)
		if err != nil {
			return err
		}
		differ = append(differ, hubOnly...)
		p.scanned += len(keys)
		p.differ += len(differ)
		p.report()
		return l.markDifferent(ctx, differ, mustCompare)
	})
	if err != nil {
		l.rs.last.set(start, time.Since(start), "failed: "+err.Error())
		return err
	}
	p.finish()
	switch {
	case kept > 0:
		l.keepLocalReset(kept)
	case !l.both():
		l.endLocalReset() // a complete resync found no key only on the hub
	}
	if n := l.synced.EndSweep(sweep); n > 0 {
		l.log.Info().Int("keys", n).Msg("forgot the synced states of keys gone from both sides")
	}
	l.rs.lastKeys = p.scanned
	l.rs.runIDs.commit(l)
	l.rs.last.set(start, time.Since(start), fmt.Sprintf("ok: %d keys compared, %d differed", p.scanned, p.differ))
	l.Stats.Repaired.Add(int64(p.differ))
	l.log.Info().Int("keys_scanned", p.scanned).Int("keys_differing", p.differ).
		Str("took", time.Since(start).Round(time.Millisecond).String()).Msg("resync done")
	l.setLive()
	return nil
}

// markDifferent queues keys a resync found different. Unlike events, it
// waits for room in the dirty set rather than overflow it: a resync must
// not cause the overflow that would call for another resync.
func (l *Link) markDifferent(ctx context.Context, keys [][]byte, why uint8) error {
	for len(keys) > 0 {
		room := min(l.dirty.Room()/2, len(keys))
		if room <= 0 {
			if !sleepCtx(ctx, 10*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		l.dirty.AddAll(keys[:room], why)
		keys = keys[room:]
	}
	return nil
}

// noneDigest is store.NoneDigest as the dedup table keeps it.
var noneDigest, _ = dedup.ParseDigest(store.NoneDigest)

// flushProbeEvery is how often the sides are checked for a restart or a flush,
// which emit no keyspace event.
const flushProbeEvery = 5 * time.Second

// resetResyncTicks: while a local reset is kept, a resync every this many
// probes (30 s) sees whether it was repaired.
const resetResyncTicks = 6

// watchRemote notices a remote Redis that restarted (its run_id changed),
// or a side that was flushed, and asks for a resync. It writes nothing.
func (l *Link) watchRemote(ctx context.Context) {
	t := time.NewTicker(flushProbeEvery)
	defer t.Stop()
	lastID, _ := l.remoteRunID(ctx) // its own read: a shared hub's may not be there yet
	defer l.joinShared()()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-l.rs.flushSuspect:
			// The shared probe found the keys of its links gone.
			l.checkFlushed(ctx)
			continue
		case <-t.C:
		}
		if l.reset.active() && tick%resetResyncTicks == 0 {
			// A kept local reset ends with a resync that finds no key only
			// on the hub: look again now and then (the operator repairs
			// with redisrepl verify while the link runs).
			l.requestResync(false)
		}
		if id, err := l.watchedRunID(ctx); err == nil {
			if lastID != "" && id != lastID {
				l.requestResync(false) // the resync sees the new run_id
			}
			lastID = id
		}
		if l.shared.hub == nil { // a shared hub's links are probed together (hubs.go)
			l.checkFlushed(ctx)
		}
	}
}

// checkFlushed looks whether a side was flushed (flushedSide), and if so
// resyncs, refilling it.
func (l *Link) checkFlushed(ctx context.Context) {
	if s, ok := l.flushedSide(ctx); ok {
		l.log.Warn().Str("side", s.String()).Msg("keys known to be synced are all gone there (flushed?): resyncing, refilling it")
		if s == LocalSide && !l.both() {
			l.reset.suspect.Store(true) // keys only on the hub are a local reset
		}
		l.requestResync(true)
	}
}

// suspectFlush asks the link to check its own keys for a flush.
func (l *Link) suspectFlush() {
	select {
	case l.rs.flushSuspect <- struct{}{}:
	default:
	}
}

// flushedSide samples keys the dedup table knows were synced, without TTL
// and with no change pending, and names the side where all of them are
// gone: it was flushed (FLUSHALL emits no event), or its data lost. Keys
// deleted by commands have events, which mark them dirty: a mass delete is
// not mistaken for a flush. ok is false if none, or if a side cannot be
// asked.
func (l *Link) flushedSide(ctx context.Context) (s Side, ok bool) {
	sample := l.flushSample()
	if len(sample) < 4 {
		return 0, false
	}
	for _, sd := range []*side{l.remote, l.local} {
		exists, err := sd.st.Exists(ctx, sample)
		if err != nil {
			continue // the workers report errors
		}
		gone := 0
		for _, e := range exists {
			if !e {
				gone++
			}
		}
		if gone == len(sample) && l.stillClean(sample) {
			return sd.id, true
		}
	}
	return 0, false
}

// flushSample is up to 8 keys the dedup table knows were synced, without
// TTL and with no change pending: gone from a side, they were flushed.
func (l *Link) flushSample() [][]byte {
	var sample [][]byte
	for _, k := range l.synced.Sample(16, func(e dedup.Entry) bool { return e.ExpireAt == 0 && e.Digest != noneDigest }) {
		if !l.dirty.Has(k) && len(sample) < 8 {
			sample = append(sample, k)
		}
	}
	return sample
}

// stillClean says whether, a moment later, none of keys has had an event:
// a delete's event may still be on its way when its key is found gone.
func (l *Link) stillClean(keys [][]byte) bool {
	time.Sleep(200 * time.Millisecond)
	for _, k := range keys {
		if l.dirty.Has(k) {
			return false
		}
	}
	return true
}

// watchedRunID is the remote's run_id for watchRemote: read now, or on a
// shared hub the one its watch read last (a restart is noticed a few
// seconds later; a resync still reads its own, remoteRunID).
func (l *Link) watchedRunID(ctx context.Context) (string, error) {
	return l.shared.watchedRunID(ctx, l.client)
}

func (l *Link) remoteRunID(ctx context.Context) (string, error) { return remoteRunID(ctx, l.client) }

// remoteRunID reads the run_id of the Redis behind c.
func remoteRunID(ctx context.Context, c *webdis.Client) (string, error) {
	v, err := c.Do(ctx, []byte("INFO"), []byte("server"))
	if err != nil {
		return "", err
	}
	info, err := redis.String(v, nil)
	if err != nil {
		return "", err
	}
	if id := runID(info); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("no run_id in INFO")
}

func runID(info string) string {
	for _, line := range strings.Split(info, "\n") {
		if id, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// SetProgressBar makes resyncs draw a progress bar on w (a terminal);
// nil turns it off. Call it before Run.
func (l *Link) SetProgressBar(w io.Writer) { l.rs.bar = w }
