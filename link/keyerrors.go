package link

import (
	"context"
	"time"
)

// Per-key errors (docs/ARCHITECTURE.md, "Errors"): a key that cannot be
// read, copied or written must neither hold back the other keys of its
// batch nor flood the log. When a batch fails with an error that is not
// about the side as a whole, its keys are copied one by one; a key that
// fails alone is reported by name (truncated), counted, and retried on its
// own with a growing delay, or, when the refusal is permanent (over a size
// limit), not retried until it changes again.

// isolate copies the keys of a batch that failed one by one. It returns a
// side-wide error if one stops it; keys that fail alone get their own delay
// (b.later) and are reported.
func (l *Link) isolate(ctx context.Context, b *batch) error {
	b.later = make([]time.Duration, len(b.keys))
	for i, k := range b.keys {
		one := &batch{keys: b.keys[i : i+1], whys: b.whys[i : i+1], since: b.since[i : i+1]}
		err := l.copyBatch(ctx, one)
		switch {
		case err == nil:
			l.work.retries.ok(one.keys)
		case sideWide(err):
			b.later = nil
			return err
		case permanent(err):
			b.later[i] = -1
			l.keyFail(k, err, "not retried until it changes")
		default:
			b.later[i] = l.work.retries.failed(k)
			l.keyFail(k, err, "retried in "+b.later[i].String())
		}
	}
	return nil
}

// keyFail reports a key that failed alone.
func (l *Link) keyFail(key string, err error, then string) {
	l.Stats.KeyErrors.Add(1)
	l.noteErr(err, "copy key")
	l.log.Error().Str("key", truncate(key, logKeyMax)).Str("error", truncate(err.Error(), logErrMax)).
		Str("then", then).Msg("key not replicated")
}
