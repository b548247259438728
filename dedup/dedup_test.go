package dedup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
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
	if err := back.Load(path, ""); err != nil {
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
	if err := back.Load(path, ""); err == nil || back.Len() != 0 {
		t.Fatalf("damaged file: err %v, %d entries", err, back.Len())
	}
	if err := back.Load(path+".missing", ""); !errors.Is(err, os.ErrNotExist) {
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

// A crash loses at most the changes not yet flushed: the journal, replayed
// on the snapshot, brings back every flushed change, deletes and clears
// included, and a record torn by the crash ends the replay cleanly.
func TestJournalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	snap, jpath := filepath.Join(dir, "l.state"), filepath.Join(dir, "l.state.journal")
	tab := New(0)
	d := "aaaaaaaaaaaaaaaa0000"
	tab.Record([]byte("before"), d, 0)
	if err := tab.Save(snap); err != nil {
		t.Fatal(err)
	}
	if err := tab.OpenJournal(jpath); err != nil {
		t.Fatal(err)
	}
	tab.Record([]byte("k1"), "bbbbbbbbbbbbbbbb", 5)
	tab.Record([]byte("k\x00/2"), "cccccccccccccccc", 0)
	tab.Forget([]byte("before"))
	tab.Record([]byte("k3"), "dddddddddddddddd", -1)
	if err := tab.Flush(); err != nil {
		t.Fatal(err)
	}
	tab.Record([]byte("unflushed"), d, 0) // lost in the crash: never flushed
	// The crash: no Save, no Close. A torn record follows what was synced.
	f, err := os.OpenFile(jpath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{40, 'P', 1})
	f.Close()

	back := New(0)
	if err := back.Load(snap, jpath); err != nil {
		t.Fatal(err)
	}
	want := map[string]Entry{"k1": {0xbbbbbbbbbbbbbbbb, 5}, "k\x00/2": {0xcccccccccccccccc, 0}, "k3": {0xdddddddddddddddd, -1}}
	if back.Len() != len(want) {
		t.Fatalf("%d keys after replay, want %d", back.Len(), len(want))
	}
	for k, e := range want {
		if got, ok := back.Lookup([]byte(k)); !ok || got != e {
			t.Errorf("%q: %+v %v, want %+v", k, got, ok, e)
		}
	}

	// A checkpoint empties the journal into the snapshot; a Clear after it
	// is journaled too.
	if err := back.OpenJournal(jpath); err != nil {
		t.Fatal(err)
	}
	if err := back.Checkpoint(snap); err != nil {
		t.Fatal(err)
	}
	if back.JournalSize() != 0 {
		t.Fatalf("journal holds %d bytes after a checkpoint", back.JournalSize())
	}
	back.Clear()
	back.Record([]byte("after"), d, 0)
	if err := back.CloseJournal(); err != nil {
		t.Fatal(err)
	}
	again := New(0)
	if err := again.Load(snap, jpath); err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Lookup([]byte("after")); !ok || again.Len() != 1 {
		t.Fatalf("after clear and record: %d keys", again.Len())
	}
	// Only a journal, no snapshot yet: loaded all the same.
	only := New(0)
	if err := only.Load(snap+".none", jpath); err != nil || only.Len() != 1 {
		t.Fatalf("journal alone: %d keys, %v", only.Len(), err)
	}
}

// BenchmarkJournalRecord: the cost a journal adds to each synced key.
func BenchmarkJournalRecord(b *testing.B) {
	tab := New(0)
	if err := tab.OpenJournal(filepath.Join(b.TempDir(), "j")); err != nil {
		b.Fatal(err)
	}
	defer tab.CloseJournal()
	key := []byte("lab1:sensor:000001")
	b.ReportAllocs()
	for i := range b.N {
		tab.Record(key, "0123456789abcdef", int64(i))
		if i%4096 == 0 {
			tab.Flush()
		}
	}
}

// Only a state the link wrote recently is an echo: one loaded from the
// state file, or found equal by a resync, is a write of its own when it
// comes back (the key was emptied on both sides and written again).
func TestEchoOnlyOfRecentWrites(t *testing.T) {
	tb := New(0)
	k := []byte("k")
	tb.Record(k, d1, 0)
	if !tb.Echo(k, d1, 0, 0) {
		t.Fatal("a state just written is not its echo")
	}
	if tb.Echo(k, d2, 0, 0) {
		t.Fatal("another state is an echo")
	}
	tb.epoch = tb.epoch.Add(-EchoWindow - 2*time.Second) // the write is old
	if tb.Echo(k, d1, 0, 0) || !tb.Synced(k, d1, 0, 0) {
		t.Fatal("an old write is still an echo, or no longer the synced state")
	}
	prev, _ := tb.Lookup([]byte("r"))
	tb.RecordIf([]byte("r"), prev, false, d1, 0) // a resync found it equal
	if tb.Echo([]byte("r"), d1, 0, 0) {
		t.Fatal("a state a resync found equal counts as the link's write")
	}
	path := filepath.Join(t.TempDir(), "s")
	tb.Record([]byte("loaded"), d1, 0)
	if err := tb.Save(path); err != nil {
		t.Fatal(err)
	}
	back := New(0)
	if err := back.Load(path, ""); err != nil {
		t.Fatal(err)
	}
	if back.Echo([]byte("loaded"), d1, 0, 0) || !back.Synced([]byte("loaded"), d1, 0, 0) {
		t.Fatal("a loaded state is an echo, or not the synced state")
	}
}

// A sweep forgets the keys it did not see (they exist on neither side) and
// keeps those touched and those recorded while it ran.
func TestSweepForgetsUnseenKeys(t *testing.T) {
	tb := New(0)
	for _, k := range []string{"seen", "gone", "late"} {
		tb.Record([]byte(k), d1, 0)
	}
	g := tb.BeginSweep()
	tb.Touch([][]byte{[]byte("seen"), []byte("absent")})
	tb.Record([]byte("new"), d2, 0) // recorded during the sweep
	if n := tb.EndSweep(g); n != 2 {
		t.Fatalf("swept %d entries, want 2 (gone, late)", n)
	}
	for k, want := range map[string]bool{"seen": true, "new": true, "gone": false, "late": false, "absent": false} {
		if _, ok := tb.Lookup([]byte(k)); ok != want {
			t.Errorf("%s present %v, want %v", k, ok, want)
		}
	}
	// A sweep superseded by a newer one does nothing.
	old := tb.BeginSweep()
	tb.BeginSweep()
	if n := tb.EndSweep(old); n != 0 || tb.Len() != 2 {
		t.Fatalf("a superseded sweep forgot %d entries", n)
	}
}

// A flush that fails loses nothing: the records stay pending and go out
// with the next flush that works, and a torn tail is cut off.
func TestJournalFlushFailureKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	jpath := filepath.Join(dir, "j")
	tab := New(0)
	if err := tab.OpenJournal(jpath); err != nil {
		t.Fatal(err)
	}
	tab.Record([]byte("A"), d1, 0)
	good := tab.journal.f
	ro, err := os.Open(jpath) // writes fail on it
	if err != nil {
		t.Fatal(err)
	}
	tab.journal.f = ro
	if err := tab.Flush(); err == nil {
		t.Fatal("a flush to a read-only file worked")
	}
	tab.journal.f = good
	ro.Close()
	tab.Record([]byte("B"), d2, 0)
	if err := tab.Flush(); err != nil {
		t.Fatal(err)
	}
	back := New(0)
	if err := back.Load(filepath.Join(dir, "none"), jpath); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"A", "B"} {
		if _, ok := back.Lookup([]byte(k)); !ok {
			t.Errorf("%s lost by the failed flush", k)
		}
	}
	tab.CloseJournal()
}

// BenchmarkEchoCheckAndRecord is what the push path spends per key copied
// on the synced table: the no-op check (Echo) and recording the state
// written, over 20,000 distinct keys (a burst).
func BenchmarkEchoCheckAndRecord(b *testing.B) {
	const n = 20_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("burst:%d", i))
	}
	tb := New(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range keys {
			if !tb.Echo(k, d1, 0, EchoTolerance) {
				tb.Record(k, d2, 0)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
}
