package store

import (
	"crypto/sha1"
	"encoding/hex"
	"hash"
	"slices"
	"strconv"
)

// digestOf is luaLib's digest(ty, v) computed in Go, for elems laid out as
// in State: sha1 hex of ty, '|', then the element hashes joined by ','.
// elementHashes makes them.
func digestOf(ty string, elems [][]byte) string {
	h := sha1.New()
	h.Write([]byte(ty))
	h.Write([]byte{'|'})
	for i, p := range elementHashes(ty, elems) {
		if i > 0 {
			h.Write([]byte{','})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// elementHashes are digest()'s parts: the sha1 hex of "len:field" "len:value"
// of each pair of a hash, of "len:element" of each element of other types;
// sorted for a hash or a set.
func elementHashes(ty string, elems [][]byte) []string {
	var parts []string
	p := sha1.New()
	if ty == "hash" {
		parts = make([]string, 0, len(elems)/2)
		for i := 0; i+1 < len(elems); i += 2 {
			p.Reset()
			writeField(p, elems[i])
			writeField(p, elems[i+1])
			parts = append(parts, hex.EncodeToString(p.Sum(nil)))
		}
	} else {
		parts = make([]string, len(elems))
		for i, e := range elems {
			p.Reset()
			writeField(p, e)
			parts[i] = hex.EncodeToString(p.Sum(nil))
		}
	}
	if ty == "hash" || ty == "set" {
		slices.Sort(parts)
	}
	return parts
}

// writeField writes luaLib's field(s): its length, ':', then s.
func writeField(h hash.Hash, b []byte) {
	h.Write(strconv.AppendInt(nil, int64(len(b)), 10))
	h.Write([]byte{':'})
	h.Write(b)
}
