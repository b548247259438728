package dedup

// Version is one side's current state of a key, as far as deciding goes.
type Version struct {
	Exists   bool
	Digest   uint64 // of type and contents (a missing key has one too); 0 = unknown
	ExpireAt int64  // unix ms; 0 = none
}

// Action is what to do with a key whose two sides were read.
type Action int

const (
	Equal        Action = iota // nothing: both sides hold the same state
	CopyToRemote               // the local state wins
	CopyToLocal                // the remote state wins
)

func (a Action) String() string {
	return [...]string{"equal", "copy-to-remote", "copy-to-local"}[a]
}

// Decide says which side's state of a key wins, given both sides' current
// versions and the state last synced (if any): a side that changed since the
// last sync wins over one that did not, so a key deleted on one side is
// deleted on the other, never resurrected. When both changed, or nothing is
// known of the key, the policy decides (localWins), except that a key never
// synced and present on one side only is copied to the other: it is new
// there, not deleted here.
func Decide(local, remote Version, last Entry, haveLast bool, tolerance int64, localWins bool) Action {
	if same(local, remote, tolerance) {
		return Equal
	}
	policy := CopyToLocal
	if localWins {
		policy = CopyToRemote
	}
	if !haveLast {
		switch {
		case !local.Exists:
			return CopyToLocal
		case !remote.Exists:
			return CopyToRemote
		}
		return policy
	}
	localChanged := !matches(local, last, tolerance)
	remoteChanged := !matches(remote, last, tolerance)
	switch {
	case localChanged && !remoteChanged:
		return CopyToRemote
	case remoteChanged && !localChanged:
		return CopyToLocal
	}
	return policy
}

func same(a, b Version, tolerance int64) bool {
	if a.Exists != b.Exists {
		return false
	}
	if !a.Exists {
		return true
	}
	return a.Digest != 0 && a.Digest == b.Digest && SameExpiry(a.ExpireAt, b.ExpireAt, tolerance)
}

func matches(v Version, e Entry, tolerance int64) bool {
	return v.Digest != 0 && v.Digest == e.Digest && SameExpiry(v.ExpireAt, e.ExpireAt, tolerance)
}

// Expiry times are absolute (unix ms) and computed from each side's clock,
// so two that name the same moment may differ a little. These are the
// tolerances, in ms, used everywhere expiry times are compared.
const (
	// ExpiryTolerance: two sides' expiry times this close count as the same
	// TTL (resyncs, verify's default, the plain fallback, which reads long
	// TTLs to the second).
	ExpiryTolerance = 1000
	// EchoTolerance: an expiry read back this close to the one the link
	// wrote is its echo. PEXPIREAT writes the absolute time, which reads
	// back within a millisecond on any clock.
	EchoTolerance = 2
)

// SameExpiry says whether expiry times a and b (unix ms, 0 = none) are the
// same within tolerance ms.
func SameExpiry(a, b, tolerance int64) bool {
	if (a == 0) != (b == 0) {
		return false
	}
	d := a - b
	return d <= tolerance && -d <= tolerance
}
