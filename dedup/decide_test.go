package dedup

import "testing"

func TestDecide(t *testing.T) {
	const tol = 1000
	a := Version{Exists: true, Digest: 0xa}
	b := Version{Exists: true, Digest: 0xb}
	c := Version{Exists: true, Digest: 0xc}
	gone := Version{Exists: false, Digest: 0x9}
	aTTL := Version{Exists: true, Digest: 0xa, ExpireAt: 50_000}
	unknown := Version{Exists: true}
	last := func(v Version) Entry { return Entry{Digest: v.Digest, ExpireAt: v.ExpireAt} }
	cases := []struct {
		name          string
		local, remote Version
		last          Entry
		haveLast      bool
		localWins     bool
		want          Action
	}{
		{"equal", a, a, last(b), true, true, Equal},
		{"both gone", gone, gone, last(a), true, true, Equal},
		{"local changed", b, a, last(a), true, false, CopyToRemote},
		{"remote changed", a, b, last(a), true, true, CopyToLocal},
		{"deleted locally is not resurrected", gone, a, last(a), true, false, CopyToRemote},
		{"deleted remotely is not resurrected", a, gone, last(a), true, true, CopyToLocal},
		{"both changed, local wins", b, c, last(a), true, true, CopyToRemote},
		{"both changed, remote wins", b, c, last(a), true, false, CopyToLocal},
		{"deleted here, changed there: policy", gone, b, last(a), true, true, CopyToRemote},
		{"TTL added locally", aTTL, a, last(a), true, false, CopyToRemote},
		{"TTL within tolerance is equal", aTTL, Version{Exists: true, Digest: 0xa, ExpireAt: 50_900}, last(b), true, true, Equal},
		{"never synced, only local", a, gone, Entry{}, false, false, CopyToRemote},
		{"never synced, only remote", gone, a, Entry{}, false, true, CopyToLocal},
		{"never synced, both differ: local wins", a, b, Entry{}, false, true, CopyToRemote},
		{"never synced, both differ: remote wins", a, b, Entry{}, false, false, CopyToLocal},
		{"unknown digests are never equal", unknown, unknown, last(a), true, true, CopyToRemote},
	}
	for _, c := range cases {
		if got := Decide(c.local, c.remote, c.last, c.haveLast, tol, c.localWins); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
