package link

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redisrepl/redisrepl/webdis"
)

// Per-key errors (docs/ARCHITECTURE.md, "Errors"): a key that cannot be
// read, copied or written must neither hold back the other keys of its
// batch nor flood the log. When a batch fails with an error that is not
// about the side as a whole, its keys are copied one by one; a key that
// fails alone is reported by name (truncated), counted, and retried on its
// own with a growing delay, or, when the refusal is permanent (over a size
// limit), not retried until it changes again.

const (
	keyRetryMin = time.Second     // first delay of a failing key
	keyRetryMax = 5 * time.Minute // longest delay
	logKeyMax   = 200             // bytes of a key name in a log line
	logErrMax   = 1000            // bytes of an error message in a log line
)

// keyRetries counts the failures of keys that failed alone.
type keyRetries struct {
	mu sync.Mutex
	m  map[string]int
}

// failed counts one more failure of key and says how long it waits.
func (r *keyRetries) failed(key string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]int)
	}
	n := r.m[key]
	r.m[key] = n + 1
	return min(keyRetryMin<<min(n, 20), keyRetryMax)
}

// ok forgets the failures of keys copied.
func (r *keyRetries) ok(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return
	}
	for _, k := range keys {
		delete(r.m, k)
	}
}

// sideWide says whether err concerns a side as a whole (it is down, slow,
// refuses the link, or answers garbage: webdis.ErrTransient, or Webdis
// refusing the request) rather than one key: then the whole batch waits,
// with backoff. Anything else is taken as one key's problem.
func sideWide(err error) bool {
	err = webdis.Classify(err)
	return errors.Is(err, webdis.ErrTransient) || webdis.KindOf(err) == webdis.KindForbidden
}

// permanent says whether a key's error will not go away by retrying the
// same state: the key or its value is over a size limit.
func permanent(err error) bool { return errors.Is(webdis.Classify(err), webdis.ErrPermanent) }

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

// truncate cuts s to n bytes, saying how long it was.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
