package store

import (
	"bytes"
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

	// Expect, for a conditional write (Store.Write in direction both): the
	// first 16 hex digits of the digest the key must still hold on the side
	// written, "" for none. A key that held something else is not written
	// (Skipped).
	Expect string
}

// Exists says whether the key exists.
func (s *State) Exists() bool { return s.Type != "none" }

// applyLen is the number of bytes the state adds to an apply request: its
// key, type, expiry, element count, elements and condition.
func (s *State) applyLen() int {
	n := argLen(s.Key) + argLen([]byte(s.Type)) + 1 + intLen(s.ExpireAt) +
		1 + intLen(int64(len(s.Elems))) + argLen([]byte(s.Expect))
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

// parseStates decodes readScript's reply for keys, and computes the
// digest of each key read whole.
func parseStates(keys [][]byte, reply any) ([]State, error) {
	vs, err := redis.Values(reply, nil)
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	states := make([]State, len(keys))
	// The elements of all keys share one backing array: fewer than the
	// fields of the reply.
	pool := make([][]byte, max(len(vs)-len(keys), 0))
	var dg digester
	p := 0
	for i, k := range keys {
		if p >= len(vs) {
			return nil, fmt.Errorf("read reply: truncated after %d fields", p)
		}
		head, ok := vs[p].([]byte)
		p++
		var f [4][]byte
		nf := 0
		for ok && nf < len(f) {
			field, rest, more := bytes.Cut(head, []byte{' '})
			f[nf], head, nf = field, rest, nf+1
			if !more {
				break
			}
		}
		if !ok || nf < 3 {
			return nil, fmt.Errorf("read reply: bad header for key %d", i)
		}
		exp, err1 := parseInt(f[1])
		n, err2 := parseInt(f[2])
		if err1 != nil || err2 != nil || n < -2 || n > int64(len(vs)-p) || (n == -1) != (nf == 4) {
			return nil, fmt.Errorf("read reply: bad header for key %d", i)
		}
		st := &states[i]
		st.Key, st.Type, st.ExpireAt = k, typeName(f[0]), exp
		switch n {
		case -2:
			st.Deferred = true
		case -1:
			st.Big = true
			st.BigSize, _ = parseInt(f[3])
		default:
			if int(n) > len(pool) {
				return nil, fmt.Errorf("read reply: bad header for key %d", i)
			}
			st.Elems, pool = pool[:n:n], pool[n:]
			for j := range st.Elems {
				b, ok := vs[p].([]byte)
				st.Elems[j] = b
				if !ok || b == nil {
					return nil, fmt.Errorf("read reply: element %d of key %d is not a string", j, i)
				}
				p++
			}
			st.Digest = dg.digest(st.Type, st.Elems)
		}
	}
	if p != len(vs) {
		return nil, fmt.Errorf("read reply: %d fields left over", len(vs)-p)
	}
	return states, nil
}

// parseInt parses a decimal integer without converting b to a string.
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || len(d) > 18 {
		return strconv.ParseInt(string(b), 10, 64) // its error, or a long number
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return strconv.ParseInt(string(b), 10, 64)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// typeName is the type name b as a string, without allocating one for the
// types Redis has.
func typeName(b []byte) string {
	switch string(b) {
	case "string":
		return "string"
	case "hash":
		return "hash"
	case "list":
		return "list"
	case "set":
		return "set"
	case "zset":
		return "zset"
	case "stream":
		return "stream"
	case "none":
		return "none"
	}
	return string(b)
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
