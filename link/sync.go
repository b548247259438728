package link

import (
	"context"
	"fmt"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
	"github.com/redisrepl/redisrepl/link/store"
)

// copyBatch brings the keys of b to the same state on both sides: in push
// mode by copying their local state to the remote, in both mode by deciding
// per key which side wins (dedup.Decide).
func (l *Link) copyBatch(ctx context.Context, b *batch) error {
	p, err := l.prepare(ctx, b)
	if err != nil {
		return err
	}
	return l.commit(ctx, p)
}

// plan is what copying a batch writes, read and decided by prepare.
type plan struct {
	toRemote, toLocal []copyJob
}

// size is about what p's writes carry, for the window of bytes in flight.
func (p *plan) size() int {
	n := 0
	for _, jobs := range [][]copyJob{p.toRemote, p.toLocal} {
		for _, j := range jobs {
			n += int(j.st.Size())
		}
	}
	return n
}

// commit writes what p says.
func (l *Link) commit(ctx context.Context, p *plan) error {
	if err := l.copyStates(ctx, l.local, l.remote, p.toRemote); err != nil {
		return err
	}
	return l.copyStates(ctx, l.remote, l.local, p.toLocal)
}

// prepare reads the keys of b and decides what to write where. It writes
// nothing, so that a worker prepares its next batch while the writes of
// the previous one are on their way (run.go, worker).
func (l *Link) prepare(ctx context.Context, b *batch) (*plan, error) {
	keys := make([][]byte, len(b.keys))
	for i, k := range b.keys {
		keys[i] = []byte(k)
	}
	local, err := l.local.st.Read(ctx, keys)
	if err != nil {
		return nil, err
	}
	var remote []*store.State
	if l.both() {
		if remote, err = l.readRemoteFor(ctx, keys, b.whys); err != nil {
			return nil, err
		}
	}
	if err := l.digestBig(ctx, l.local.st, local); err != nil {
		return nil, err
	}
	for _, r := range remote {
		if r != nil && r.Big && !r.Deferred {
			if r.Digest, err = l.remote.st.BigDigest(ctx, r.Key, r.Type); err != nil {
				return nil, err
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
			// the link just wrote there (its echo), copy it.
			act = dedup.CopyToRemote
			if b.whys[i]&mustCompare == 0 && l.synced.Echo(st.Key, st.Digest, st.ExpireAt, l.echoTolerance()) {
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
			remote[i].Expect = store.DigestPrefix(st.Digest)
			toLocal = append(toLocal, copyJob{remote[i], b.since[i]})
		}
	}
	return &plan{toRemote, toLocal}, nil
}

// digestBig computes the digests of the big keys among states, which the
// read left empty.
func (l *Link) digestBig(ctx context.Context, s *store.Store, states []store.State) error {
	for i := range states {
		st := &states[i]
		if st.Big && !st.Deferred && st.BigSize <= l.cfg.MaxValueBytes {
			d, err := s.BigDigest(ctx, st.Key, st.Type)
			if err != nil {
				return err
			}
			st.Digest = d
		}
	}
	return nil
}

// needsRemoteRead says whether the outcome of a key dirty for why depends
// on its remote state (direction both): unless only the local side
// changed and the local side wins anyway.
func (l *Link) needsRemoteRead(why uint8) bool { return why != changedLocal || !l.localWins() }

// splitByRead cuts b (direction both) into the keys written without a
// read of the remote first and those whose remote state must be read: a
// key written locally goes out at once, its write carrying its own
// precondition (State.Expect), instead of after a round trip to read the
// remote state of other keys of its batch (the hub's events, echoes among
// them). Either may be nil.
func (l *Link) splitByRead(b *batch) (direct, read *batch) {
	n := 0
	for _, why := range b.whys {
		if l.needsRemoteRead(why) {
			n++
		}
	}
	if n == 0 {
		return b, nil
	}
	if n == len(b.keys) {
		return nil, b
	}
	direct, read = &batch{}, &batch{}
	for i, why := range b.whys {
		to := direct
		if l.needsRemoteRead(why) {
			to = read
		}
		to.keys = append(to.keys, b.keys[i])
		to.whys = append(to.whys, why)
		to.since = append(to.since, b.since[i])
	}
	return direct, read
}

// readRemoteFor reads the remote state of the keys whose outcome depends on
// it: all of them, but for keys only the local side changed when the local
// side wins anyway.
//
// A key only the hub changed, whose last event carried its state (values
// on the stream: echoes.go), is not read: the state carried is the hub's
// after that event, as a read would be.
func (l *Link) readRemoteFor(ctx context.Context, keys [][]byte, whys []uint8) ([]*store.State, error) {
	var idx []int
	out := make([]*store.State, len(keys))
	for i, why := range whys {
		carried := l.remote.echoes.takeCarried(keys[i])
		switch {
		case carried != nil && why == changedRemote:
			out[i] = carried
			l.Stats.ValuesUsed.Add(1)
		case l.needsRemoteRead(why):
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return out, nil
	}
	pick := make([][]byte, len(idx))
	for j, i := range idx {
		pick[j] = keys[i]
	}
	states, err := l.remote.st.Read(ctx, pick)
	if err != nil {
		return nil, err
	}
	for j, i := range idx {
		out[i] = &states[j]
	}
	return out, nil
}

func version(s *store.State) dedup.Version {
	d, _ := dedup.ParseDigest(s.Digest)
	return dedup.Version{Exists: s.Exists(), Digest: d, ExpireAt: s.ExpireAt}
}

func (l *Link) localWins() bool { return l.cfg.Conflict != config.RemoteWins }

// expectOn is what the remote must still hold for a copy of key to be
// written there: the state read, or if it was not read, the state last
// synced; "" when neither is known.
func (l *Link) expectOn(key []byte, read *store.State) string {
	if read != nil {
		return store.DigestPrefix(read.Digest)
	}
	if e, ok := l.synced.Lookup(key); ok {
		return fmt.Sprintf("%016x", e.Digest)
	}
	return ""
}

// record remembers st as the state both sides hold. A key missing on both
// is forgotten instead: "never synced" decides exactly as "synced as
// missing" would (dedup.Decide), and the table does not fill with
// tombstones of deleted and expired keys.
func (l *Link) record(st *store.State) {
	if !st.Exists() {
		l.synced.Forget(st.Key)
		return
	}
	l.synced.Record(st.Key, st.Digest, st.ExpireAt)
}

// echoTolerance is how far apart (ms) an expiry read back may be from the
// one the link wrote and still be its echo: dedup.EchoTolerance, but the
// plain fallback reads long TTLs to the second.
func (l *Link) echoTolerance() int64 {
	if l.remote.st.Path() == store.PathPlain {
		return dedup.ExpiryTolerance
	}
	return dedup.EchoTolerance
}

// copyJob is a state to write on the other side, and since when it waits.
type copyJob struct {
	st    *store.State
	since int64
}

// copyStates writes the states read from side src on side dst (Store.Write:
// as many keys per request as fit, big keys in chunks). Each key written is
// recorded as synced; a key skipped, changed on dst since it was read, is
// decided again.
func (l *Link) copyStates(ctx context.Context, src, dst *side, jobs []copyJob) error {
	if len(jobs) == 0 {
		return nil
	}
	states := make([]store.State, len(jobs))
	for i, j := range jobs {
		states[i] = *j.st
	}
	o := store.WriteOptions{MaxValueBytes: l.cfg.MaxValueBytes}
	// In direction both, the write's own events on dst are dropped until
	// its mark comes (echoes.go).
	var echoes *echoFilter
	var token uint64
	if l.both() {
		echoes = dst.echoes
		o.Mark = func(whole []int) []byte {
			keys := make([]string, len(whole))
			for k, i := range whole {
				keys[k] = string(states[i].Key)
			}
			token = echoes.expect(keys)
			return store.WriteMark(dst.db, dst.st.Prefix, token)
		}
	}
	w, err := dst.st.Write(ctx, src.st, states, o)
	if token != 0 && (!w.Marked || err != nil) {
		echoes.release(token)
	}
	for i, j := range jobs {
		switch w.Outcomes[i] {
		case store.Skipped:
			// Changed on dst since it was read: decide again, with both
			// sides read (its event is on its way too).
			if echoes != nil {
				echoes.releaseKey(string(j.st.Key), token)
			}
			l.dirty.Add(j.st.Key, changedLocal|changedRemote)
		case store.Wrote:
			l.written(j, dst, "")
		case store.WroteInChunks:
			l.written(j, dst, " in chunks")
		}
	}
	// A key left out (a stream the plain fallback cannot write, a value
	// over max_value_bytes) is reported, not retried: the next change or
	// resync reports it again.
	for _, e := range w.Left {
		l.fail(e, "copy")
	}
	return err
}

// written records a key copied to side dst: synced state, counters, lag,
// debug log.
func (l *Link) written(j copyJob, dst *side, how string) {
	st := j.st
	l.record(st)
	dst.keys.Add(1)
	dst.bytes.Add(st.Size())
	if j.since > 0 {
		l.Stats.Lag.Observe(time.Duration(time.Now().UnixNano() - j.since))
	}
	if e := l.log.Debug(); e.Enabled() {
		e.Bytes("key", st.Key).Str("type", st.Type).Str("copied", "to "+dst.id.String()+how).Msg("key copied")
	}
}
