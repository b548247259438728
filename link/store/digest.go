package store

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
)

// digestOf is luaLib's digest(ty, v) computed in Go, for elems laid out as
// in State. Ordered types: sha1 hex of ty, '|', then the element hashes in
// order joined by ','. Unordered types (hash, set): sha1 hex of ty, '|',
// then their elemSum.
func digestOf(ty string, elems [][]byte) string {
	var d digester
	return d.digest(ty, elems)
}

// digester computes digestOf for many keys with the same two hashes.
type digester struct {
	h, p hash.Hash
	buf  [64]byte // a field's length, then an element hash and its hex
}

func (d *digester) digest(ty string, elems [][]byte) string {
	if unordered(ty) {
		var s elemSum
		s.addElems(ty, elems)
		return s.digest(ty)
	}
	if d.h == nil {
		d.h, d.p = sha1.New(), sha1.New()
	}
	h, p, buf := d.h, d.p, &d.buf
	h.Reset()
	h.Write(append(append(buf[:0], ty...), '|'))
	for i, e := range elems {
		p.Reset()
		writeField(p, e, buf)
		sum := p.Sum(buf[:0])
		out := buf[sha1.Size:]
		if i > 0 {
			out[0], out = ',', out[:1+2*sha1.Size]
			hex.Encode(out[1:], sum)
		} else {
			out = out[:2*sha1.Size]
			hex.Encode(out, sum)
		}
		h.Write(out)
	}
	return hex.EncodeToString(h.Sum(buf[:0]))
}

// unordered says whether a type's digest ignores the order of its elements.
func unordered(ty string) bool { return ty == "hash" || ty == "set" }

// elementHashes are digest()'s parts for an ordered type: the sha1 hex of
// "len:element" of each element, in order.
func elementHashes(ty string, elems [][]byte) []string {
	parts := make([]string, len(elems))
	p := sha1.New()
	var buf [64]byte
	for i, e := range elems {
		p.Reset()
		writeField(p, e, &buf)
		parts[i] = hex.EncodeToString(p.Sum(buf[:0]))
	}
	return parts
}

// elemSum combines the element hashes of a hash or a set without regard to
// their order, and without holding them: each element's SHA-1 (of
// "len:field" "len:value" for a hash, "len:member" for a set) is read as five
// big-endian 32-bit words, added word by word modulo 2^32, and the elements
// are counted. luaLib's sum_add does the same in Lua, where every partial
// sum stays below 2^33 and so is exact in a double. Sums of chunks add up
// (merge): a key too big for one script is digested a chunk at a time
// (BigDigest) with nothing held per element.
//
// The sum is not a cryptographic commitment (elements could be crafted to
// collide), but two different contents collide by accident with
// probability about 2^-160, the same as SHA-1 itself; a digest only decides
// whether to copy a key, and the link's writers are trusted.
//
// A member counted twice changes the sum: the element count is checked
// against SCARD/HLEN at the end of a chunked walk (see BigDigest).
type elemSum struct {
	w [5]uint32
	n int64
}

// addHash adds one element hash.
func (s *elemSum) addHash(h []byte) {
	for i := range s.w {
		s.w[i] += binary.BigEndian.Uint32(h[4*i:])
	}
	s.n++
}

// addElems adds the elements laid out as in State.
func (s *elemSum) addElems(ty string, elems [][]byte) {
	p := sha1.New()
	var buf [64]byte
	step := 1
	if ty == "hash" {
		step = 2
	}
	for i := 0; i+step <= len(elems); i += step {
		p.Reset()
		for _, e := range elems[i : i+step] {
			writeField(p, e, &buf)
		}
		s.addHash(p.Sum(buf[:0]))
	}
}

func (s *elemSum) merge(o elemSum) {
	for i := range s.w {
		s.w[i] += o.w[i]
	}
	s.n += o.n
}

// String is the sum as luaLib's sum_str writes it: the count, ':', then
// the five words in hex.
func (s elemSum) String() string {
	return fmt.Sprintf("%d:%08x%08x%08x%08x%08x", s.n, s.w[0], s.w[1], s.w[2], s.w[3], s.w[4])
}

// parseElemSum reads what String writes.
func parseElemSum(n, words string) (elemSum, error) {
	var s elemSum
	var err error
	if s.n, err = strconv.ParseInt(n, 10, 64); err != nil || len(words) != 40 {
		return s, errors.New("bad element sum")
	}
	b, err := hex.DecodeString(words)
	if err != nil {
		return s, errors.New("bad element sum")
	}
	for i := range s.w {
		s.w[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return s, nil
}

// digest is the digest of a key of type ty whose elements sum to s.
func (s elemSum) digest(ty string) string {
	sum := sha1.Sum([]byte(ty + "|" + s.String()))
	return hex.EncodeToString(sum[:])
}

// writeField writes luaLib's field(s): its length, ':', then s. buf is
// scratch space, so that nothing is allocated per element.
func writeField(h hash.Hash, b []byte, buf *[64]byte) {
	h.Write(append(strconv.AppendInt(buf[:0], int64(len(b)), 10), ':'))
	h.Write(b)
}
