package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFairQueueServesWaitingTenantsInTurn: with every slot taken, a freed
// slot goes to the tenants that wait in turn, not to the longest queue,
// and never past a tenant's own max.
func TestFairQueueServesWaitingTenantsInTurn(t *testing.T) {
	q := newFairQueue(2, prometheus.NewRegistry())
	a, b := q.tenant("a", 2), q.tenant("b", 1)
	ctx := context.Background()
	for i := range 2 {
		if !q.acquire(ctx, a, 0) {
			t.Fatalf("a could not take free slot %d of 2", i+1)
		}
	}
	got := make(chan string, 20)
	for range 5 {
		go func() {
			if q.acquire(ctx, a, time.Minute) {
				got <- "a"
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // a's five wait first
	go func() {
		if q.acquire(ctx, b, time.Minute) {
			got <- "b"
		}
	}()
	time.Sleep(50 * time.Millisecond)
	q.release(a)
	q.release(a)
	var grants []string
	for range 2 {
		select {
		case w := <-got:
			grants = append(grants, w)
		case <-time.After(time.Second):
		}
	}
	if len(grants) != 2 || grants[0] != "b" && grants[1] != "b" {
		t.Errorf("two slots freed while a's 5 and b's 1 wait went to %q: b must get one", grants)
	}
	// A timed-out waiter leaves its queue.
	q2 := newFairQueue(1, prometheus.NewRegistry())
	c := q2.tenant("c", 1)
	q2.acquire(ctx, c, 0)
	if q2.acquire(ctx, c, 10*time.Millisecond) {
		t.Fatal("a second slot past total 1")
	}
	q2.release(c)
	if !q2.acquire(ctx, c, 0) || len(q2.ring) != 0 {
		t.Errorf("after a timed-out wait: ring %d", len(q2.ring))
	}
}
