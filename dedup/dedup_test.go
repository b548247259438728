package dedup

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
)

const (
	d1 = "0123456789abcdef0123456789abcdef01234567"
	d2 = "fedcba9876543210fedcba9876543210fedcba98"
)

func TestSyncedMatchesDigestAndExpiry(t *testing.T) {
	tb := New(10)
	k := []byte("k")
	if tb.Synced(k, d1, 0, 1000) {
		t.Fatal("unknown key reported synced")
	}
	tb.Record(k, d1, 0)
	if !tb.Synced(k, d1, 0, 1000) {
		t.Fatal("recorded state not synced")
	}
	if tb.Synced(k, d2, 0, 1000) {
		t.Fatal("other contents reported synced")
	}
	if tb.Synced(k, d1, 5000, 1000) {
		t.Fatal("a TTL where none was synced reported synced")
	}
	tb.Record(k, d1, 100_000)
	if !tb.Synced(k, d1, 100_900, 1000) || tb.Synced(k, d1, 101_001, 1000) {
		t.Fatal("expiry tolerance wrong")
	}
	if tb.Synced(k, "", 100_000, 1000) {
		t.Fatal("unknown digest reported synced")
	}
	tb.Record(k, "", 0)
	if _, ok := tb.Lookup(k); ok {
		t.Fatal("recording an unknown digest did not forget the key")
	}
}

func TestBounded(t *testing.T) {
	tb := New(100)
	for i := range 1000 {
		tb.Record([]byte(fmt.Sprint(i)), d1, 0)
	}
	if tb.Len() != 100 {
		t.Fatalf("%d entries, want 100", tb.Len())
	}
	if !tb.Synced([]byte("999"), d1, 0, 0) {
		t.Fatal("the newest entry was evicted")
	}
}

func TestSample(t *testing.T) {
	tb := New(0)
	for i := range 50 {
		tb.Record([]byte(fmt.Sprint(i)), d1, int64(i%2))
	}
	s := tb.Sample(8, func(e Entry) bool { return e.ExpireAt == 0 })
	if len(s) != 8 {
		t.Fatalf("sampled %d", len(s))
	}
	for _, k := range s {
		if e, _ := tb.Lookup(k); e.ExpireAt != 0 {
			t.Fatalf("sample %s does not satisfy the filter", k)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	path := t.TempDir() + "/sub/link.state"
	tb := New(0)
	keys := []string{"", "a", "nul\x00key", "\xff\xfe", string(make([]byte, 300))}
	for i, k := range keys {
		tb.Record([]byte(k), d1, int64(i*1000-1))
	}
	if err := tb.Save(path); err != nil {
		t.Fatal(err)
	}
	back := New(0)
	if err := back.Load(path); err != nil {
		t.Fatal(err)
	}
	if back.Len() != len(keys) {
		t.Fatalf("%d entries back, want %d", back.Len(), len(keys))
	}
	for i, k := range keys {
		if !back.Synced([]byte(k), d1, int64(i*1000-1), 0) {
			t.Errorf("entry %q not restored", k)
		}
	}
	// A damaged file is refused, not half loaded.
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 1
	os.WriteFile(path, data, 0o600)
	if err := back.Load(path); err == nil || back.Len() != 0 {
		t.Fatalf("damaged file: err %v, %d entries", err, back.Len())
	}
	if err := back.Load(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// BenchmarkTableMemory reports the heap one remembered key costs, besides
// the key itself (go test ./dedup -bench TableMemory -benchtime 1x).
func BenchmarkTableMemory(b *testing.B) {
	const n = 1_000_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("lab1:sensor:%07d", i)) // 19 bytes
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := New(n)
		for _, k := range keys {
			tb.Record(k, d1, 0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n-float64(len(keys[0])), "bytes/key+key")
		runtime.KeepAlive(tb)
	}
}

func TestRecordIf(t *testing.T) {
	tb := New(0)
	k := []byte("k")
	tb.RecordIf(k, Entry{}, false, d1, 0) // absent as expected: recorded
	if !tb.Synced(k, d1, 0, 0) {
		t.Fatal("RecordIf on an absent key did not record")
	}
	prev, _ := tb.Lookup(k)
	tb.Record(k, d2, 0)               // a newer copy meanwhile
	tb.RecordIf(k, prev, true, d1, 0) // an older comparison must not undo it
	if !tb.Synced(k, d2, 0, 0) {
		t.Fatal("RecordIf overwrote a newer state")
	}
	tb.ForgetIf(k, prev, true)
	if _, ok := tb.Lookup(k); !ok {
		t.Fatal("ForgetIf dropped a newer state")
	}
}
