package link

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redisrepl/redisrepl/dedup"
)

// copyBatch brings the keys of b to the same state on both sides: in push
// mode by copying their local state to the remote, in both mode by deciding
// per key which side wins (dedup.Decide).
func (l *Link) copyBatch(ctx context.Context, b *batch) error {
	keys := make([][]byte, len(b.keys))
	for i, k := range b.keys {
		keys[i] = []byte(k)
	}
	local, err := l.local.Read(ctx, keys)
	if err != nil {
		return err
	}
	var remote []*State
	if l.direction() == "both" {
		if remote, err = l.readRemoteFor(ctx, keys, b.whys); err != nil {
			return err
		}
	}
	if err := l.digestBig(ctx, l.local, local); err != nil {
		return err
	}
	for _, r := range remote {
		if r != nil && r.Big && !r.Deferred {
			if r.Digest, err = bigDigest(ctx, l.remote, r.Key, r.Type); err != nil {
				return err
			}
		}
	}
	var toRemote, toLocal []copyJob
	for i := range local {
		st := &local[i]
		if st.Deferred || remote != nil && remote[i] != nil && remote[i].Deferred {
			l.dirty.Add(st.Key, b.whys[i]) // in flight: queued again by Done
			continue
		}
		var act dedup.Action
		echo := false
		if remote == nil || remote[i] == nil {
			// The local side changed and wins: unless this is the state
			// last synced (an echo, a no-op), copy it.
			act = dedup.CopyToRemote
			if b.whys[i]&mustCompare == 0 && l.synced.Synced(st.Key, st.Digest, st.ExpireAt, l.echoTolerance()) {
				act, echo = dedup.Equal, true
			}
		} else {
			last, known := l.synced.Lookup(st.Key)
			act = dedup.Decide(version(st), version(remote[i]), last, known, l.echoTolerance(), l.localWins())
		}
		if e := l.log.Debug(); e.Enabled() && b.whys[i] != changedLocal {
			e.Bytes("key", st.Key).Uint8("why", b.whys[i]).Str("action", act.String()).Msg("decided")
		}
		switch act {
		case dedup.Equal:
			// Both sides were read equal: that is the synced state. An echo
			// matched the synced state, which stays as written: recording
			// the local read would let small expiry changes pile up.
			if !echo {
				l.record(st)
			}
			l.Stats.KeysSkipped.Add(1)
		case dedup.CopyToRemote:
			if remote != nil { // direction both: write only over the state decided on
				st.Expect = l.expectOn(st.Key, remote[i])
			}
			toRemote = append(toRemote, copyJob{st, b.since[i]})
		case dedup.CopyToLocal:
			remote[i].Expect = digestPrefix(st.Digest)
			toLocal = append(toLocal, copyJob{remote[i], b.since[i]})
		}
	}
	if err := l.copyStates(ctx, l.local, l.remote, toRemote); err != nil {
		return err
	}
	return l.copyStates(ctx, l.remote, l.local, toLocal)
}

// digestBig computes the digests of the big keys among states, which the
// read left empty.
func (l *Link) digestBig(ctx context.Context, s *Store, states []State) error {
	for i := range states {
		st := &states[i]
		if st.Big && !st.Deferred && st.BigSize <= l.maxValue() {
			d, err := bigDigest(ctx, s, st.Key, st.Type)
			if err != nil {
				return err
			}
			st.Digest = d
		}
	}
	return nil
}

// readRemoteFor reads the remote state of the keys whose outcome depends on
// it: all of them, but for keys only the local side changed when the local
// side wins anyway.
func (l *Link) readRemoteFor(ctx context.Context, keys [][]byte, whys []uint8) ([]*State, error) {
	var idx []int
	for i, why := range whys {
		if why != changedLocal || !l.localWins() {
			idx = append(idx, i)
		}
	}
	out := make([]*State, len(keys))
	if len(idx) == 0 {
		return out, nil
	}
	pick := make([][]byte, len(idx))
	for j, i := range idx {
		pick[j] = keys[i]
	}
	// Key names travel in the request: as many requests as they need.
	var states []State
	for _, part := range splitKeys(pick, l.remote.MaxRequest) {
		st, err := l.remote.Read(ctx, part)
		if err != nil {
			return nil, err
		}
		states = append(states, st...)
	}
	for j, i := range idx {
		out[i] = &states[j]
	}
	return out, nil
}

func version(s *State) dedup.Version {
	d, _ := dedup.ParseDigest(s.Digest)
	return dedup.Version{Exists: s.Exists(), Digest: d, ExpireAt: s.ExpireAt}
}

func (l *Link) localWins() bool { return l.cfg.Conflict != "remote" }

// expectOn is what the remote must still hold for a copy of key to be
// written there: the state read, or if it was not read, the state last
// synced; "" when neither is known.
func (l *Link) expectOn(key []byte, read *State) string {
	if read != nil {
		return digestPrefix(read.Digest)
	}
	if e, ok := l.synced.Lookup(key); ok {
		return fmt.Sprintf("%016x", e.Digest)
	}
	return ""
}

// digestPrefix is the part of a digest the dedup table keeps.
func digestPrefix(d string) string {
	if len(d) < 16 {
		return ""
	}
	return d[:16]
}

// record remembers st as the state both sides hold. A key missing on both
// is forgotten instead: "never synced" decides exactly as "synced as
// missing" would (dedup.Decide), and the table does not fill with
// tombstones of deleted and expired keys.
func (l *Link) record(st *State) {
	if !st.Exists() {
		l.synced.Forget(st.Key)
		return
	}
	l.synced.Record(st.Key, st.Digest, st.ExpireAt)
}

// echoTolerance is how far apart (ms) an expiry read back may be from the
// one the link wrote and still be its echo. PEXPIREAT writes the absolute
// time, which reads back within a millisecond on any clock; the plain
// fallback reads long TTLs to the second.
func (l *Link) echoTolerance() int64 {
	if l.remote.Path() == "plain" {
		return ttlTolerance
	}
	return 2
}

// copyJob is a state to write on the other side, and since when it waits.
type copyJob struct {
	st    *State
	since int64
}

// copyStates writes the states read from src on dst: as many keys per
// request as fit, big keys in chunks. Each key written is recorded as synced.
func (l *Link) copyStates(ctx context.Context, src, dst *Store, jobs []copyJob) error {
	if len(jobs) == 0 {
		return nil
	}
	toRemote := dst == l.remote
	var whole []State
	var wholeJobs, big []copyJob
	for _, j := range jobs {
		if j.st.Big || dst.MaxRequest > 0 && j.st.applyLen() > dst.MaxRequest-1024 {
			big = append(big, j)
		} else {
			whole = append(whole, *j.st)
			wholeJobs = append(wholeJobs, j)
		}
	}
	if len(whole) > 0 {
		// A key the plain fallback cannot write (a stream) is reported, not
		// retried: the next change or resync reports it again.
		_, err := dst.Apply(ctx, whole)
		var unsup *unsupportedError
		if err != nil && !errors.As(err, &unsup) {
			return err
		}
		for i, j := range wholeJobs {
			switch {
			case whole[i].Skipped:
				// Changed on dst since it was read: decide again, with
				// both sides read (its event is on its way too).
				l.dirty.Add(j.st.Key, changedLocal|changedRemote)
			case unsup == nil || !unsup.has(j.st.Key):
				l.written(j, toRemote, "")
			}
		}
		if unsup != nil {
			l.fail(err, "copy")
		}
	}
	for _, j := range big {
		st := j.st
		if st.BigSize > l.maxValue() {
			l.fail(fmt.Errorf("key %q: value of %d bytes is over max_value_bytes=%d: not replicated", st.Key, st.BigSize, l.maxValue()), "copy")
			continue
		}
		if _, err := copyBig(ctx, src, dst, st.Key, st.Type, st.ExpireAt); err != nil {
			if errors.As(err, new(*unsupportedError)) {
				l.fail(err, "copy")
				continue
			}
			return err
		}
		l.written(j, toRemote, " in chunks")
	}
	return nil
}

// written records a copied key: synced state, counters, lag, debug log.
func (l *Link) written(j copyJob, toRemote bool, how string) {
	st := j.st
	l.record(st)
	size := int64(0)
	for _, e := range st.Elems {
		size += int64(len(e))
	}
	if st.Big {
		size = st.BigSize
	}
	if toRemote {
		l.Stats.KeysToRemote.Add(1)
		l.Stats.BytesToRemote.Add(size)
	} else {
		l.Stats.KeysToLocal.Add(1)
		l.Stats.BytesToLocal.Add(size)
	}
	if j.since > 0 {
		l.Stats.Lag.Observe(time.Duration(time.Now().UnixNano() - j.since))
	}
	if e := l.log.Debug(); e.Enabled() {
		dir := "to remote"
		if !toRemote {
			dir = "to local"
		}
		e.Bytes("key", st.Key).Str("type", st.Type).Str("copied", dir+how).Msg("key copied")
	}
}
