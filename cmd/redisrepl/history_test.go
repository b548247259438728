package main

import "testing"

// The lag of an interval is computed from what was observed in it, not
// since the start.
func TestWindowQuantileCountsOnlyTheInterval(t *testing.T) {
	bounds := []float64{.001, .01, .1, 1}
	before := []uint64{1000, 1000, 1000, 1000} // 1000 fast ones before
	after := []uint64{1000, 1000, 1010, 1010}  // then 10 of ~100 ms
	if got := windowQuantileMs(bounds, before, after, 10, 0.99); got == nil || *got != 100 {
		t.Fatalf("p99 of the interval = %v, want 100 ms", got)
	}
	if got := windowQuantileMs(bounds, after, after, 0, 0.99); got != nil {
		t.Fatalf("p99 of an empty interval = %v, want none", *got)
	}
	// An observation beyond the last bound counts in n only.
	if got := windowQuantileMs(bounds, after, after, 1, 0.99); got == nil || *got != 1000 {
		t.Fatalf("p99 beyond the last bound = %v, want the last bound", got)
	}
}
