package store

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/gomodule/redigo/redis"
)

// Chunked reads of big keys in plain mode (see plainOps in plain_read.go),
// for CopyBig and BigDigest.

// chunk is chunkScript: one chunk of a big key, for CopyBig. Cursors are
// byte offsets (string) and indexes (list, zset: ZRANGE by rank); a hash or
// a set (HSCAN and SSCAN replies are nested) comes whole in one chunk.
func (p plainOps) chunk(ctx context.Context, k []byte, ty, cursor string, count int) (Chunk, error) {
	off, _ := strconv.ParseInt(cursor, 10, 64)
	n := int64(count)
	if n <= 0 {
		n = 512
	}
	rng := [][]byte{strconv.AppendInt(nil, off, 10), strconv.AppendInt(nil, off+n-1, 10)}
	var v any
	var err error
	per := int64(1) // elements per counted unit
	switch ty {
	case "string":
		b, err := redis.Bytes(p.doKey(ctx, "GETRANGE", k, rng...))
		if err != nil {
			return Chunk{}, err
		}
		c := Chunk{Elems: [][]byte{b}}
		if int64(len(b)) >= n {
			c.Next = strconv.FormatInt(off+n, 10)
		}
		return c, nil
	case "list":
		v, err = p.doKey(ctx, "LRANGE", k, rng...)
	case "zset":
		v, err = p.doKey(ctx, "ZRANGE", k, rng[0], rng[1], []byte("WITHSCORES"))
		per = 2
	case "hash", "set":
		if cursor != "0" {
			return Chunk{}, nil
		}
		if ty == "hash" {
			v, err = p.doKey(ctx, "HGETALL", k)
		} else {
			v, err = p.doKey(ctx, "SMEMBERS", k)
		}
		n = -1 // all of it: no next chunk
	case "stream":
		return Chunk{}, unsupported(ty, k)
	default:
		return Chunk{}, fmt.Errorf("no chunks for type %q", ty)
	}
	elems, err := redis.ByteSlices(v, err)
	if err != nil {
		return Chunk{}, err
	}
	c := Chunk{Elems: elems}
	if n > 0 && int64(len(elems)) >= n*per {
		c.Next = strconv.FormatInt(off+n, 10)
	}
	return c, nil
}

// hashChunk is hashChunkScript, for BigDigest: the element hashes of one
// chunk. Lists and sorted sets are walked by rank; a hash or a set (HSCAN's
// and SSCAN's replies are nested) comes whole in one chunk (one HGETALL or
// SMEMBERS, atomic, so its count is its HLEN or SCARD), which holds it in
// memory once: plain mode's digest of a big hash or set is not bounded by a
// chunk.
func (p plainOps) hashChunk(ctx context.Context, k []byte, ty, cursor string, count int) (HashChunk, error) {
	var c Chunk
	switch ty {
	case "hash", "set":
		var hc HashChunk
		if cursor == "0" {
			elems, err := p.fetchPlain(ctx, k, ty)
			if err != nil && err != errChanged {
				return HashChunk{}, err
			}
			hc.Sum.addElems(ty, elems)
			hc.Card = hc.Sum.n
		}
		return hc, nil
	case "list", "zset":
		var err error
		if c, err = p.chunk(ctx, k, ty, cursor, count); err != nil {
			return HashChunk{}, err
		}
	case "stream":
		return HashChunk{}, unsupported(ty, k)
	default:
		return HashChunk{}, fmt.Errorf("no chunk hashes for type %q", ty)
	}
	return HashChunk{Next: c.Next, Hashes: elementHashes(ty, c.Elems)}, nil
}

// stringHash is stringHashScript: sha1 hex of "len:value" of a string of at
// most max bytes, else "".
func (p plainOps) stringHash(ctx context.Context, k []byte, max int64) (string, error) {
	n, err := redis.Int64(p.doKey(ctx, "STRLEN", k))
	if err != nil {
		return "", err
	}
	if n > max {
		return "", nil
	}
	v, err := redis.Bytes(p.doKey(ctx, "GET", k))
	if err != nil && err != redis.ErrNil {
		return "", err
	}
	h := sha1.New()
	var buf [64]byte
	writeField(h, v, &buf)
	return hex.EncodeToString(h.Sum(nil)), nil
}
