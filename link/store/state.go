package store

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/dedup"
)

// State is the whole state of one key, as read from one side and written to
// the other. Elems is laid out per type:
//
//	string  [value]
//	hash    [field, value, ...]
//	list    [element, ...]
//	set     [member, ...]
//	zset    [member, score, ...]   (score as Redis prints it)
//	stream  [last-id, id, n, field, value, ... (n fields and values), id, n, ...]
//	none    []                     (the key does not exist)
type State struct {
	Key      []byte
	Type     string
	ExpireAt int64  // unix ms; 0 = no TTL
	Digest   string // of type and contents; "" when unknown
	Elems    [][]byte
	Big      bool  // too big to read in one go: Elems is empty, copy in chunks
	BigSize  int64 // with Big: its size in bytes (estimated for collections)
	Deferred bool  // not read: the batch was full; read it again later

	// Expect, for a conditional write (Store.Apply in direction both): the
	// first 16 hex digits of the digest the key must still hold on the side
	// written, "" for none. Skipped is set when the key held something else
	// and was not written.
	Expect  string
	Skipped bool
}

// Exists says whether the key exists.
func (s *State) Exists() bool { return s.Type != "none" }

// applyLen is the number of bytes the state adds to an apply request: its
// key, type, expiry, element count, elements and condition.
func (s *State) applyLen() int {
	n := argLen(s.Key) + argLen([]byte(s.Type)) + argLen(strconv.AppendInt(nil, s.ExpireAt, 10)) +
		argLen(itoa(len(s.Elems))) + argLen([]byte(s.Expect))
	for _, e := range s.Elems {
		n += argLen(e)
	}
	return n
}

// size is the bytes of its values that the state holds.
func (s *State) size() int {
	n := 0
	for _, e := range s.Elems {
		n += len(e)
	}
	return n
}

// Size is the size of the key's value in bytes: of the values read, or for
// a Big key its size on the side read (estimated for collections).
func (s *State) Size() int64 {
	if s.Big {
		return s.BigSize
	}
	return int64(s.size())
}

// parseStates decodes readScript's reply for keys.
func parseStates(keys [][]byte, reply any) ([]State, error) {
	vs, err := redis.Values(reply, nil)
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	states := make([]State, len(keys))
	p := 0
	next := func() ([]byte, error) {
		if p >= len(vs) {
			return nil, fmt.Errorf("read reply: truncated after %d fields", p)
		}
		b, ok := vs[p].([]byte)
		p++
		if !ok {
			return nil, fmt.Errorf("read reply: field %d is %T, not a string", p, vs[p-1])
		}
		return b, nil
	}
	for i, k := range keys {
		var f [4][]byte
		for j := range f {
			if f[j], err = next(); err != nil {
				return nil, err
			}
		}
		exp, err1 := strconv.ParseInt(string(f[1]), 10, 64)
		n, err2 := strconv.Atoi(string(f[3]))
		if err1 != nil || err2 != nil || n < -2 || n > len(vs)-p {
			return nil, fmt.Errorf("read reply: bad header for key %d", i)
		}
		st := State{Key: k, Type: string(f[0]), ExpireAt: exp, Digest: string(f[2])}
		if n == -2 {
			st.Deferred, st.Digest = true, ""
		} else if n == -1 {
			st.Big = true
			size, err := next()
			if err != nil {
				return nil, err
			}
			st.BigSize, _ = strconv.ParseInt(string(size), 10, 64)
		} else {
			st.Elems = make([][]byte, n)
			for j := range st.Elems {
				b, ok := vs[p].([]byte)
				st.Elems[j] = b
				if !ok || b == nil {
					return nil, fmt.Errorf("read reply: element %d of key %d is not a string", j, i)
				}
				p++
			}
		}
		states[i] = st
	}
	if p != len(vs) {
		return nil, fmt.Errorf("read reply: %d fields left over", len(vs)-p)
	}
	return states, nil
}

// Summary is a key's type, expiry and digest, as digestScript returns them.
type Summary struct {
	Type     string
	ExpireAt int64
	Digest   string
}

func parseSummaries(n int, reply any) ([]Summary, error) {
	vs, err := redis.ByteSlices(reply, nil)
	if err != nil {
		return nil, fmt.Errorf("digest reply: %w", err)
	}
	if len(vs) != 3*n {
		return nil, fmt.Errorf("digest reply: %d fields for %d keys", len(vs), n)
	}
	out := make([]Summary, n)
	for i := range out {
		exp, err := strconv.ParseInt(string(vs[3*i+1]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("digest reply: bad expiry %q", vs[3*i+1])
		}
		out[i] = Summary{Type: string(vs[3*i]), ExpireAt: exp, Digest: string(vs[3*i+2])}
	}
	return out, nil
}

// Same says whether two summaries describe equal keys: same type and
// contents, and expiry times within tolerance ms of each other
// (dedup.SameExpiry).
func (a Summary) Same(b Summary, tolerance int64) bool {
	if a.Type != b.Type {
		return false
	}
	if a.Type == "none" {
		return true
	}
	if a.Digest == "" || a.Digest != b.Digest {
		return false
	}
	return dedup.SameExpiry(a.ExpireAt, b.ExpireAt, tolerance)
}

// Summary is the state's type, expiry and digest.
func (s *State) Summary() Summary { return Summary{s.Type, s.ExpireAt, s.Digest} }

// NoneDigest is the digest of a key that does not exist (see luaLib).
var NoneDigest = func() string {
	sum := sha1.Sum([]byte("none|"))
	return hex.EncodeToString(sum[:])
}()

// DigestPrefix is the part of a digest the dedup table keeps, and a
// conditional write checks (State.Expect); "" for an unknown digest.
func DigestPrefix(d string) string {
	if len(d) < 16 {
		return ""
	}
	return d[:16]
}
