package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redisrepl/redisrepl/webdis"
)

// The one write path of a store: the link's copies, redisrepl verify's
// repairs and a local reset's restore all go through Write.

// WriteOptions say how Write writes.
type WriteOptions struct {
	// Mark, if set, is called once before the states written whole are
	// sent, with their indexes, and returns the write mark (WriteMark) to
	// publish after their writes, or nil for none.
	Mark func(whole []int) []byte
	// MaxValueBytes: a key read Big of more bytes is not copied, and is
	// named in Written.Left; 0 = no limit.
	MaxValueBytes int64
}

// Outcome is what Write did with one state.
type Outcome uint8

const (
	NotWritten    Outcome = iota // the write failed before it (Write's error)
	Wrote                        // written whole, in a request with others
	WroteInChunks                // copied from src in chunks (CopyBig)
	Skipped                      // not written: the key no longer held the state's Expect
	Left                         // not written, for a reason in Written.Left
)

// Written is what Write did.
type Written struct {
	Outcomes []Outcome // by state
	Marked   bool      // every request of the states written whole published the mark
	Left     []error   // why keys were left out: unsupported here, over MaxValueBytes
}

// Write writes states, read from src, on s: keys that fit a request whole,
// many per request (Apply), the others copied from src in chunks
// (CopyBig). It changes nothing of states, and tells what it did: a key it
// cannot write (a type this side cannot carry, a value over MaxValueBytes)
// is left out and named in Left while the others are written; an error
// stops it, and the outcomes say what was written before.
func (s *Store) Write(ctx context.Context, src *Store, states []State, o WriteOptions) (Written, error) {
	w := Written{Outcomes: make([]Outcome, len(states))}
	var whole, big []int
	for i := range states {
		if s.Fits(&states[i]) {
			whole = append(whole, i)
		} else {
			big = append(big, i)
		}
	}
	if len(whole) > 0 {
		batch := make([]State, len(whole))
		for j, i := range whole {
			batch[j] = states[i]
		}
		var mark []byte
		if o.Mark != nil {
			mark = o.Mark(whole)
		}
		marked, skipped, err := s.apply(ctx, batch, mark)
		// A key this side cannot write (a stream on plain commands) is
		// left out: the next change or resync names it again.
		var unsup *UnsupportedError
		if err != nil && !errors.As(err, &unsup) {
			return w, err
		}
		w.Marked = marked && err == nil
		for _, i := range whole {
			w.Outcomes[i] = Wrote
			if unsup != nil && unsup.Has(states[i].Key) {
				w.Outcomes[i] = Left
			}
		}
		for _, j := range skipped {
			w.Outcomes[whole[j]] = Skipped
		}
		if unsup != nil {
			w.Left = append(w.Left, err)
		}
	}
	for _, i := range big {
		st := &states[i]
		if o.MaxValueBytes > 0 && st.BigSize > o.MaxValueBytes {
			w.Outcomes[i] = Left
			w.Left = append(w.Left, webdis.WithKind(fmt.Errorf("key %q: value of %d bytes is over max_value_bytes=%d: not replicated", st.Key, st.BigSize, o.MaxValueBytes), webdis.ErrTooLarge))
			continue
		}
		if err := CopyBig(ctx, src, s, st.Key, st.Type, st.ExpireAt); err != nil {
			if errors.As(err, new(*UnsupportedError)) {
				w.Outcomes[i] = Left
				w.Left = append(w.Left, err)
				continue
			}
			return w, err
		}
		w.Outcomes[i] = WroteInChunks
	}
	return w, nil
}

// CopyKeys makes each of keys on dst hold its current state on src: whole
// keys, each written atomically, a key that src lacks deleted, a key too big
// for one request copied in chunks and renamed into place. Unlike a running
// link it applies no max_value_bytes limit: the caller asked for these keys.
func CopyKeys(ctx context.Context, src, dst *Store, keys [][]byte) error {
	return copyKeys(ctx, src, dst, keys, "")
}

// RestoreMissing is CopyKeys for keys that dst lacks: a key written on dst
// meanwhile is left as it is (the write checks, atomically, that the key is
// still absent). A key too big for one request is copied in chunks and
// renamed into place unconditionally: a write of it on dst during its copy
// is overwritten.
func RestoreMissing(ctx context.Context, src, dst *Store, keys [][]byte) error {
	return copyKeys(ctx, src, dst, keys, DigestPrefix(NoneDigest))
}

func copyKeys(ctx context.Context, src, dst *Store, keys [][]byte, expect string) error {
	for len(keys) > 0 {
		states, err := src.Read(ctx, keys)
		if err != nil {
			return err
		}
		var read []State
		var deferred [][]byte
		for _, st := range states {
			if st.Deferred { // past the read's byte budget: read again
				deferred = append(deferred, st.Key)
				continue
			}
			st.Expect = expect
			read = append(read, st)
		}
		w, err := dst.Write(ctx, src, read, WriteOptions{})
		if err != nil {
			return err
		}
		if err := errors.Join(w.Left...); err != nil {
			return err
		}
		keys = deferred
	}
	return nil
}
