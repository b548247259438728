package link

import (
	"strconv"
	"sync"
	"time"
)

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

// truncate cuts s to n bytes, saying how long it was.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
