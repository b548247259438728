package link

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func take(t *testing.T, d *dirtySet, n int) ([]string, []uint8) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b := d.Take(ctx, n)
	if b == nil {
		return nil, nil
	}
	return b.keys, b.whys
}

func done(d *dirtySet, keys []string, whys []uint8, retry bool) {
	d.Done(&batch{keys: keys, whys: whys, since: make([]int64, len(keys))}, retry)
}

func TestDirtySetCoalesces(t *testing.T) {
	d := newDirtySet(10)
	for range 1000 {
		d.Add([]byte("a"), changedLocal)
	}
	d.Add([]byte("b"), changedLocal)
	d.Add([]byte("a"), mustCompare)
	keys, whys := take(t, d, 10)
	if fmt.Sprint(keys) != "[a b]" || whys[0] != changedLocal|mustCompare || whys[1] != changedLocal {
		t.Fatalf("got %v %v", keys, whys)
	}
}

func TestDirtySetInFlightKeyWaits(t *testing.T) {
	d := newDirtySet(10)
	d.Add([]byte("a"), changedLocal)
	keys, whys := take(t, d, 10)
	d.Add([]byte("a"), changedRemote) // changes while in flight: not handed out again yet
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if b := d.Take(ctx, 10); b != nil {
		k := b.keys
		t.Fatalf("in-flight key handed out twice: %v", k)
	}
	cancel()
	done(d, keys, whys, false)
	keys, whys = take(t, d, 10)
	if fmt.Sprint(keys) != "[a]" || whys[0] != changedRemote {
		t.Fatalf("got %v %v", keys, whys)
	}
	done(d, keys, whys, false)
	if !d.Idle() {
		t.Fatal("not idle after Done")
	}
}

func TestDirtySetRetryKeepsReason(t *testing.T) {
	d := newDirtySet(10)
	d.Add([]byte("a"), mustCompare)
	keys, whys := take(t, d, 10)
	done(d, keys, whys, true)
	keys, whys = take(t, d, 10)
	if fmt.Sprint(keys) != "[a]" || whys[0] != mustCompare {
		t.Fatalf("got %v %v", keys, whys)
	}
}

func TestDirtySetOverflowDropsAndFlags(t *testing.T) {
	d := newDirtySet(3)
	for i := range 4 {
		d.Add([]byte{byte('a' + i)}, changedLocal)
	}
	select {
	case <-d.overflowed: // the resync loop waits on it instead of polling
	default:
		t.Fatal("the overflow was not signalled")
	}
	if !d.TakeOverflow() || d.TakeOverflow() {
		t.Fatal("overflow not reported exactly once")
	}
	if d.Len() != 0 {
		t.Fatalf("%d keys kept after overflow", d.Len())
	}
	d.Add([]byte("z"), changedLocal)
	if keys, _ := take(t, d, 10); fmt.Sprint(keys) != "[z]" {
		t.Fatalf("got %v after overflow", keys)
	}
}

func TestDirtySetOrderAndCompaction(t *testing.T) {
	d := newDirtySet(100_000)
	const n = 5000
	for i := range n {
		d.Add([]byte(fmt.Sprint(i)), changedLocal)
	}
	for i := 0; i < n; {
		keys, whys := take(t, d, 7)
		for _, k := range keys {
			if i < n && k != fmt.Sprint(i) {
				t.Fatalf("got %s, want %d", k, i)
			}
			i++
		}
		done(d, keys, whys, false)
		d.Add([]byte(fmt.Sprint(n+i)), changedLocal) // keep adding while taking
	}
	if d.Len() == 0 {
		t.Fatal("keys added while taking were lost")
	}
}

func BenchmarkDirtySetAdd(b *testing.B) {
	d := newDirtySet(1 << 30)
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("lab1:sensor:%d", i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Add(keys[i&(1<<16-1)], changedLocal)
	}
}

func TestDirtySetHotKeyWaits(t *testing.T) {
	d := newDirtySet(10)
	d.Add([]byte("hot"), changedLocal)
	keys, whys := take(t, d, 10)
	d.Add([]byte("hot"), changedLocal) // changes during its copy
	start := time.Now()
	done(d, keys, whys, false)
	d.Add([]byte("hot"), changedLocal) // and again while it waits: merged
	if d.Len() != 1 || d.Idle() {
		t.Fatalf("the delayed key is not counted: len %d", d.Len())
	}
	keys, _ = take(t, d, 10)
	if waited := time.Since(start); fmt.Sprint(keys) != "[hot]" || waited < hotDelay {
		t.Fatalf("got %v after %v, want [hot] after at least %v", keys, waited, hotDelay)
	}
}

// A key that failed alone waits its delay, unless it changes again: then it
// is tried at once (it may have been fixed).
func TestDirtySetRetryWaitEndsOnChange(t *testing.T) {
	d := newDirtySet(10)
	d.Add([]byte("a"), changedLocal)
	keys, whys := take(t, d, 1)
	d.Done(&batch{keys: keys, whys: whys, since: make([]int64, 1), later: []time.Duration{time.Hour}}, false)
	if d.Len() != 1 || !d.Has([]byte("a")) {
		t.Fatalf("the failed key is not waiting: len %d", d.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if b := d.Take(ctx, 1); b != nil {
		t.Fatalf("taken before its delay: %v", b.keys)
	}
	cancel()
	d.Add([]byte("a"), changedLocal) // it changed again
	if keys, _ := take(t, d, 1); fmt.Sprint(keys) != "[a]" {
		t.Fatalf("a changed key still waits out its retry delay: %v", keys)
	}
}

// A set emptied after a burst gives its room back (Go maps never shrink):
// hundreds of idle links must not each keep the room of their last burst.
func TestDirtySetGivesRoomBackWhenEmpty(t *testing.T) {
	d := newDirtySet(0)
	for i := range 100_000 {
		d.Add([]byte(fmt.Sprintf("k%d", i)), changedLocal)
	}
	runtime.GC()
	var full runtime.MemStats
	runtime.ReadMemStats(&full)
	for !d.Idle() {
		b := d.TryTake(256)
		if b == nil {
			t.Fatal("keys pending but none taken")
		}
		d.Done(b, false)
	}
	runtime.GC()
	var empty runtime.MemStats
	runtime.ReadMemStats(&empty)
	if d.queue != nil || d.peak != 0 {
		t.Errorf("queue of %d and peak %d kept after the set emptied", len(d.queue), d.peak)
	}
	if freed := int64(full.HeapInuse) - int64(empty.HeapInuse); freed < 4<<20 {
		t.Errorf("emptying 100,000 keys freed %d bytes of heap, want the maps' several MB", freed)
	}
	runtime.KeepAlive(d)
}
