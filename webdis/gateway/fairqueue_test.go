package gateway_test

import (
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// probeP99 is the p99 of n sequential GETs of labB.
func probeP99(t *testing.T, e *env, n int) time.Duration {
	t.Helper()
	b := e.client(t, "labB")
	var lat []time.Duration
	for range n {
		start := time.Now()
		st, body, err := tryPost(b, e.url, enc("GET", "labB:k"))
		lat = append(lat, time.Since(start))
		if err != nil || st != 200 || body != "$1\r\nv\r\n" {
			t.Fatalf("labB's probe: %d %q %v", st, body, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// TestFloodingTenantWaitsInItsOwnQueue: a tenant sending 64 slow (allowed)
// requests at once holds at most its max_requests of the hub's turns; the
// rest wait in its queue, and another tenant's request waits behind at
// most that many of them, not behind the whole flood.
func TestFloodingTenantWaitsInItsOwnQueue(t *testing.T) {
	e := newEnv(t, tenantsAB)
	hub := e.direct(t)
	// A list that LPOS walks whole: a slow command with a small reply.
	if _, err := hub.Do("EVAL", "for i = 1, 300000, 1000 do local t = {} for j = 1, 1000 do t[j] = 'e' end redis.call('RPUSH', KEYS[1], unpack(t)) end", "1", "labA:list"); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Do("SET", "labB:k", "v"); err != nil {
		t.Fatal(err)
	}
	a := e.client(t, "labA")
	slow := enc("LPOS", "labA:list", "absent")
	var cost time.Duration
	for range 5 {
		start := time.Now()
		wantPrefix(t, a, e.url, slow, "$-1")
		if d := time.Since(start); cost == 0 || d < cost {
			cost = d
		}
	}
	base := probeP99(t, e, 100)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var done, failed atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, body, err := tryPost(a, e.url, slow)
				if err != nil || st != 200 || body != "$-1\r\n" {
					failed.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the flood is under way
	flood := probeP99(t, e, 100)
	close(stop)
	wg.Wait()
	// Behind at most max_requests (8: an eighth of 64) of labA's commands,
	// three times over for the two cores the flood's 64 clients share with
	// the gateway and the hub (with 64 in flight for labA it was 0.7 s).
	bound := max(20*time.Millisecond, 5*base) + 3*8*cost
	t.Logf("LPOS %v; labB's p99 alone %v, during labA's flood %v (bound %v); labA: %d requests, %d failed", cost, base, flood, bound, done.Load(), failed.Load())
	if flood > bound {
		t.Errorf("labB's p99 during labA's flood of 64: %v, bound %v", flood, bound)
	}
	if failed.Load() > 0 {
		t.Errorf("%d of labA's slow requests failed (they should wait)", failed.Load())
	}
	m := e.metrics(t)
	q := regexp.MustCompile(`redisrepl_gateway_queued_requests_total\{tenant="labA"\} (\S+)`).FindStringSubmatch(m)
	var n float64
	if q != nil {
		n, _ = strconv.ParseFloat(q[1], 64)
	}
	if n < 56 {
		t.Errorf("labA's queued requests: %v, want at least 56 (64 at once past 8)", q)
	}
	if regexp.MustCompile(`redisrepl_gateway_queued_requests_total\{tenant="labB"\} [1-9]`).MatchString(m) {
		t.Error("labB's requests waited in a queue")
	}
}
