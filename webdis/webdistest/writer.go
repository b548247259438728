package webdistest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Writer writes <prefix>w<i % Keys> = <i> to one Redis, one SET after
// another, until End, and remembers the last value of every write the
// Redis acknowledged: the writes a fault test must find on both sides.
type Writer struct {
	mu    sync.Mutex
	acked map[string]string
	n     atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

// StartWriter starts a Writer on the Redis at addr(), asked again after
// any error and every 50 writes, as an application that follows a
// failover would; it pauses pause between writes; t's end stops it.
func StartWriter(t testing.TB, addr func() string, prefix string, keys int, pause time.Duration) *Writer {
	w := &Writer{acked: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var c redis.Conn
		var at string // where c is connected
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if c != nil && i%50 == 0 && addr() != at { // the server moved (a failover)
				c.Close()
				c = nil
			}
			if c == nil {
				var err error
				at = addr()
				if c, err = redis.Dial("tcp", at, redis.DialConnectTimeout(time.Second),
					redis.DialReadTimeout(2*time.Second), redis.DialWriteTimeout(2*time.Second)); err != nil {
					c = nil
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			k, v := fmt.Sprintf("%sw%d", prefix, i%keys), fmt.Sprint(i)
			if _, err := c.Do("SET", k, v); err == nil {
				w.mu.Lock()
				w.acked[k] = v
				w.mu.Unlock()
				w.n.Add(1)
			} else {
				c.Close()
				c = nil
			}
			time.Sleep(pause)
		}
	}()
	t.Cleanup(func() { w.End() })
	return w
}

// Writes is the number of writes acknowledged so far.
func (w *Writer) Writes() int64 { return w.n.Load() }

// End stops the writer and returns the last acknowledged value of each key.
func (w *Writer) End() map[string]string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

// Missing names the keys of acked (from End) that dump does not hold with
// that string value.
func Missing(acked map[string]string, dump map[string]Key) []string {
	var out []string
	for k, v := range acked {
		if got, ok := dump[k]; !ok || got.Type != "string" || got.Items()[0] != v {
			out = append(out, k)
		}
	}
	return out
}

// WaitEqualAt waits until prefix holds the same keys on the Redis servers
// at a and b (as Hub.WaitEqual does), fails t if they differ after d, and
// returns a's dump and the time it took.
func WaitEqualAt(t testing.TB, a, b, prefix string, d time.Duration) (map[string]Key, time.Duration) {
	t.Helper()
	ac, err := dial(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	bc, err := dial(b)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	return waitEqual(t, ac, bc, prefix, d, nil, [3]string{a + " and " + b, "on " + a, "on " + b})
}
