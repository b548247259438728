package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
)

// A key too big for one request (a value of many megabytes, a hash of a
// million fields) is copied in chunks: read from the source a chunk at a
// time, built up in a staging key on the destination, then renamed into
// place, which is atomic. Neither side holds more than a chunk in memory, and
// a reader of the destination sees the old value until the rename.
//
// The source is not frozen while it is read: a change during the copy marks
// the key dirty again and it is copied once more.

// stagingKey is a new staging key of namespace prefix (see stagingMark).
func stagingKey(prefix []byte) []byte {
	var r [8]byte
	_, _ = rand.Read(r[:])
	k := append(append([]byte{}, prefix...), stagingMark...)
	return append(k, hex.EncodeToString(r[:])...)
}

// CopyBig copies key (of type ty, expiring at exp) from src to dst in
// chunks; or, when a side runs plain commands, with DUMP and RESTORE where
// that is the way (a stream) or the better one (plain_dump.go).
func CopyBig(ctx context.Context, src, dst *Store, key []byte, ty string, exp int64) error {
	if took, err := copyByDump(ctx, src, dst, key, ty, exp); took || err != nil {
		return err
	}
	err := copyChunks(ctx, src, dst, key, ty, exp)
	if ty == "stream" && errors.As(err, new(*UnsupportedError)) {
		// A side switched to plain commands during the copy.
		if took, err2 := copyByDump(ctx, src, dst, key, ty, exp); took {
			return err2
		}
	}
	return err
}

// stagingKeyFor is a new staging key of namespace prefix that hashes to
// key's Redis Cluster slot, so that the RENAME into place is one slot's
// (a cluster refuses it across slots): its hash tag is key's own ({...}
// with content, or the whole name). A prefix holding "{", or a whole name
// holding "}", cannot be tagged so: the key stays untagged, fine on one
// Redis (a cluster answers CROSSSLOT, and the copy fails as an error).
func stagingKeyFor(prefix, key []byte) []byte {
	tmp := stagingKey(prefix)
	if bytes.IndexByte(prefix, '{') >= 0 {
		return tmp
	}
	tag, whole := key, true
	if s := bytes.IndexByte(key, '{'); s >= 0 {
		if e := bytes.IndexByte(key[s+1:], '}'); e > 0 {
			tag, whole = key[s+1:s+1+e], false
		}
	}
	if whole && bytes.IndexByte(key, '}') >= 0 {
		return tmp
	}
	at := len(prefix) + len(stagingMark)
	out := append(append(append(append([]byte{}, tmp[:at]...), '{'), tag...), '}')
	return append(out, tmp[at:]...)
}

// copyChunks copies key in chunks through a staging key.
func copyChunks(ctx context.Context, src, dst *Store, key []byte, ty string, exp int64) (err error) {
	tmp := stagingKeyFor(dst.Prefix, key)
	budget := dst.MaxRequest
	if budget <= 0 {
		budget = noLimitRequest
	}
	defer func() {
		if err != nil {
			_, _ = dst.do.Do(context.WithoutCancel(ctx), []byte("DEL"), tmp)
		}
	}()
	w := &stageWriter{ctx: ctx, dst: dst, key: key, tmp: tmp, ty: ty, budget: budget}
	cursor, count := "0", 512
	switch ty {
	case "string":
		count = (budget - w.overhead()) / 3 // worst case of percent-encoding
	case "stream":
		cursor = "-"
	}
	lastID := ""
	for {
		var c Chunk
		err := src.run(func(o ops) (err error) { c, err = o.chunk(ctx, key, ty, cursor, count); return err })
		if err != nil {
			return fmt.Errorf("%s: read chunk of key %q: %w", src.Name, key, err)
		}
		cursor, lastID = c.Next, c.LastID
		vs := c.Elems
		for len(vs) > 0 {
			n := unitLen(ty, vs)
			if n <= 0 || n > len(vs) {
				return fmt.Errorf("%s: read chunk of key %q: bad reply", src.Name, key)
			}
			if err := w.add(vs[:n]); err != nil {
				return err
			}
			vs = vs[n:]
		}
		if cursor == "" {
			break
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	if !w.created {
		// The key vanished or emptied while being read: it is dirty again.
		return nil
	}
	if err := dst.run(func(o ops) error { return o.finish(ctx, dst.Prefix, tmp, key, exp, lastID) }); err != nil {
		return fmt.Errorf("%s: move staged key %q into place: %w", dst.Name, key, err)
	}
	return nil
}

// unitLen is how many elements at the start of vs belong together: a field
// and its value, a member and its score, a stream entry.
func unitLen(ty string, vs [][]byte) int {
	switch ty {
	case "hash", "zset":
		return 2
	case "stream":
		if len(vs) < 2 {
			return -1
		}
		nf, err := strconv.Atoi(string(vs[1]))
		if err != nil || nf < 0 {
			return -1
		}
		return 2 + nf
	}
	return 1
}

// stageWriter gathers elements into stage requests that fit the
// destination's request budget.
type stageWriter struct {
	ctx      context.Context
	dst      *Store
	key, tmp []byte
	ty       string
	budget   int
	args     [][]byte // pending elements
	size     int      // their encoded size
	over     int      // overhead(), once computed
	created  bool
}

// overhead is what a stage request takes besides the elements.
func (w *stageWriter) overhead() int {
	if w.over == 0 {
		w.over = stageScript.evalLen([]byte("1"), w.tmp, w.dst.Prefix, []byte(w.ty), nil)
	}
	return w.over
}

// add queues one unit (elements that belong together), sending what is
// queued first if the unit would not fit.
func (w *stageWriter) add(unit [][]byte) error {
	l := 0
	for _, e := range unit {
		l += argLen(e)
	}
	if w.overhead()+l > w.budget {
		return webdis.WithKind(fmt.Errorf("key %q: an element of %d bytes does not fit in one request of max_request_bytes=%d", w.key, l, w.budget), webdis.ErrTooLarge)
	}
	if w.overhead()+w.size+l > w.budget {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.args = append(w.args, unit...)
	w.size += l
	return nil
}

func (w *stageWriter) flush() error {
	if len(w.args) == 0 {
		return nil
	}
	// Appending a chunk twice would corrupt the copy: never resent.
	ctx := webdis.NotIdempotent(w.ctx)
	if err := w.dst.run(func(o ops) error { return o.stage(ctx, w.dst.Prefix, w.tmp, w.ty, w.args) }); err != nil {
		return fmt.Errorf("%s: stage key %q: %w", w.dst.Name, w.key, err)
	}
	w.created = true
	w.args, w.size = w.args[:0], 0
	return nil
}

// Chunk sizes of BigDigest: element hashes of an ordered type come back one
// per element; a hash's or a set's chunk comes back summed (a few dozen
// bytes), so its scripts may cover more elements and still stay short.
const (
	digestChunk    = 1000
	sumDigestChunk = 2000
)

// BigDigest computes the digest readScript's digest() would give key if it
// could read it whole, a chunk at a time, so that no script runs long on a
// busy Redis (Redis answers BUSY to everyone while a script runs past
// lua-time-limit), and with nothing held per element: ordered types are
// hashed in order as their chunks come, unordered ones (hash, set) add up
// their chunks' sums of element hashes (elemSum).
//
// A hash or a set is walked with HSCAN/SSCAN, which returns every element
// present for the whole walk at least once, and may return one twice,
// which would change the sum. Redis returns an element twice only when the
// key's table is resized between two steps of the walk, which takes a
// write to the key; a key written during the walk is dirty again anyway,
// and its digest describes no state of it. Still, the walk checks its
// element count against HLEN/SCARD read with the last chunk, and walks
// again once when they differ. A digest left wrong by a duplicate can only
// make a key look different from an equal one: it is copied again, never
// lost (and a key small enough is digested whole, in one script, by
// readScript and digestScript).
func (s *Store) BigDigest(ctx context.Context, key []byte, ty string) (string, error) {
	switch ty {
	case "string":
		h, err := s.stringHash(ctx, key)
		if err != nil {
			return "", err
		}
		sum := sha1.Sum([]byte(ty + "|" + h))
		return hex.EncodeToString(sum[:]), nil
	case "hash", "set":
		var sum elemSum
		var err error
		for range 2 {
			var card int64
			if sum, card, err = s.sumChunks(ctx, key, ty); err != nil || sum.n == card {
				break
			}
		}
		if err != nil {
			return "", err
		}
		return sum.digest(ty), nil
	}
	if ty == "stream" && s.Path() == PathPlain {
		return s.digestByPeer(ctx, key, ty)
	}
	outer := sha1.New()
	io.WriteString(outer, ty+"|")
	first := true
	cursor := "0"
	if ty == "stream" {
		cursor = "-"
	}
	for {
		var c HashChunk
		err := s.run(func(o ops) (err error) { c, err = o.hashChunk(ctx, key, ty, cursor, digestChunk); return err })
		if err != nil && ty == "stream" && s.Path() == PathPlain && errors.As(err, new(*UnsupportedError)) {
			return s.digestByPeer(ctx, key, ty) // the side refused a script just now
		}
		if err != nil {
			return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
		}
		cursor = c.Next
		if ty == "stream" && first {
			io.WriteString(outer, c.LastID) // the last-generated-id, once
			first = false
		}
		for _, h := range c.Hashes {
			if !first {
				io.WriteString(outer, ",")
			}
			io.WriteString(outer, h)
			first = false
		}
		if cursor == "" {
			break
		}
	}
	return hex.EncodeToString(outer.Sum(nil)), nil
}

// sumChunks walks a hash or a set once, adding up its chunks' sums, and
// returns their total and the key's element count read with the last one.
func (s *Store) sumChunks(ctx context.Context, key []byte, ty string) (elemSum, int64, error) {
	var sum elemSum
	for cursor := "0"; ; {
		var c HashChunk
		err := s.run(func(o ops) (err error) { c, err = o.hashChunk(ctx, key, ty, cursor, sumDigestChunk); return err })
		if err != nil {
			return sum, 0, fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
		}
		sum.merge(c.Sum)
		if cursor = c.Next; cursor == "" {
			return sum, c.Card, nil
		}
	}
}

// stringHash is sha1hex(len ':' value) of a string key: in one script up to
// 64 MiB, else streamed from chunks.
func (s *Store) stringHash(ctx context.Context, key []byte) (string, error) {
	var h string
	err := s.run(func(o ops) (err error) { h, err = o.stringHash(ctx, key, 64<<20); return err })
	if err != nil {
		return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
	}
	if h != "" {
		return h, nil
	}
	n, err := redis.Int64(s.do.Do(ctx, []byte("STRLEN"), key))
	if err != nil {
		return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
	}
	sum := sha1.New()
	fmt.Fprintf(sum, "%d:", n)
	const chunk = 1 << 20
	for off := "0"; off != ""; {
		var c Chunk
		err := s.run(func(o ops) (err error) { c, err = o.chunk(ctx, key, "string", off, chunk); return err })
		if err != nil || len(c.Elems) != 1 {
			return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, orBadReply(err))
		}
		sum.Write(c.Elems[0])
		off = c.Next
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// CompleteDigests fills in the digests Summaries left empty: those of big
// keys.
func (s *Store) CompleteDigests(ctx context.Context, keys [][]byte, sums []Summary) error {
	for i := range sums {
		if sums[i].Digest != "" || sums[i].Type == "none" {
			continue
		}
		d, err := s.BigDigest(ctx, keys[i], sums[i].Type)
		if err != nil {
			return err
		}
		sums[i].Digest = d
	}
	return nil
}
