package link

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

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

func stagingKey(prefix []byte) []byte {
	var r [8]byte
	_, _ = rand.Read(r[:])
	k := append(append([]byte{}, prefix...), stagingMark...)
	return append(k, hex.EncodeToString(r[:])...)
}

// copyBig copies key (of type ty, expiring at exp) from src to dst in chunks
// and returns the number of requests sent to dst.
func copyBig(ctx context.Context, src, dst *Store, key []byte, ty string, exp int64) (requests int, err error) {
	tmp := stagingKey(dst.Prefix)
	budget := dst.MaxRequest
	if budget <= 0 {
		budget = 8 << 20
	}
	defer func() {
		if err != nil {
			_, _ = dst.Do.Do(context.WithoutCancel(ctx), []byte("DEL"), tmp)
		}
	}()
	w := &stageWriter{ctx: ctx, dst: dst, key: key, tmp: tmp, ty: ty, budget: budget}
	cursor, count := "0", 512
	switch ty {
	case "string":
		count = (budget - 256 - 3*len(tmp)) / 3 // worst case of percent-encoding
	case "stream":
		cursor = "-"
	}
	lastID := ""
	for {
		reply, err := src.Eval(ctx, chunkScript, [][]byte{key}, []byte(ty), []byte(cursor), []byte(strconv.Itoa(count)))
		if err != nil {
			return w.requests, fmt.Errorf("%s: read chunk of key %q: %w", src.Name, key, err)
		}
		vs, err := redis.ByteSlices(reply, nil)
		if err != nil || len(vs) == 0 {
			return w.requests, fmt.Errorf("%s: read chunk of key %q: bad reply", src.Name, key)
		}
		cursor, vs = string(vs[0]), vs[1:]
		if ty == "stream" && len(vs) > 0 {
			lastID, vs = string(vs[0]), vs[1:]
		}
		for len(vs) > 0 {
			n := unitLen(ty, vs)
			if n <= 0 || n > len(vs) {
				return w.requests, fmt.Errorf("%s: read chunk of key %q: bad reply", src.Name, key)
			}
			if err := w.add(vs[:n]); err != nil {
				return w.requests, err
			}
			vs = vs[n:]
		}
		if cursor == "" {
			break
		}
	}
	if err := w.flush(); err != nil {
		return w.requests, err
	}
	if !w.created {
		// The key vanished or emptied while being read: it is dirty again.
		return w.requests, nil
	}
	_, err = dst.Eval(ctx, finishScript, [][]byte{tmp, key}, dst.Prefix, []byte(strconv.FormatInt(exp, 10)), []byte(lastID))
	w.requests++
	if err != nil {
		return w.requests, fmt.Errorf("%s: move staged key %q into place: %w", dst.Name, key, err)
	}
	return w.requests, nil
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

// stageWriter gathers elements into stageScript requests that fit the
// destination's request budget.
type stageWriter struct {
	ctx      context.Context
	dst      *Store
	key, tmp []byte
	ty       string
	budget   int
	args     [][]byte // pending elements
	size     int      // their encoded size
	requests int
	created  bool
}

// overhead is what a stageScript request takes besides the elements.
func (w *stageWriter) overhead() int {
	return len(stageScript.SHA) + 64 + webdis.EncodedLen(w.tmp) + 3*len(w.dst.Prefix)
}

// add queues one unit (elements that belong together), sending what is
// queued first if the unit would not fit.
func (w *stageWriter) add(unit [][]byte) error {
	l := 0
	for _, e := range unit {
		l += 1 + webdis.EncodedLen(e)
	}
	if w.overhead()+l > w.budget {
		return fmt.Errorf("key %q: an element of %d bytes does not fit in one request of max_request_bytes=%d", w.key, l, w.budget)
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
	args := append([][]byte{w.dst.Prefix, []byte(w.ty)}, w.args...)
	if w.ty == "stream" {
		args = append([][]byte{w.dst.Prefix, []byte(w.ty), nil}, w.args...) // add() skips the last-id slot
	}
	w.requests++
	// Appending a chunk twice would corrupt the copy: never resent.
	if _, err := w.dst.Eval(webdis.NotIdempotent(w.ctx), stageScript, [][]byte{w.tmp}, args...); err != nil {
		return fmt.Errorf("%s: stage key %q: %w", w.dst.Name, w.key, err)
	}
	w.created = true
	w.args, w.size = w.args[:0], 0
	return nil
}

// bigDigest computes the digest readScript's digest() would give key if it
// could read it whole, a chunk at a time, so that no script runs long on a
// busy Redis (Redis answers BUSY to everyone while a script runs past
// lua-time-limit). Each chunk returns per-element hashes; ordered types are
// hashed in order as they come, unordered ones (hash, set) are collected,
// deduplicated (SCAN may return an element twice) and sorted: that holds
// 41 bytes per element of the key while it runs.
func bigDigest(ctx context.Context, s *Store, key []byte, ty string) (string, error) {
	outer := sha1.New()
	io.WriteString(outer, ty+"|")
	if ty == "string" {
		h, err := stringHash(ctx, s, key)
		if err != nil {
			return "", err
		}
		io.WriteString(outer, h)
		return hex.EncodeToString(outer.Sum(nil)), nil
	}
	unordered := ty == "hash" || ty == "set"
	seen := map[string]struct{}{}
	first := true
	cursor := "0"
	if ty == "stream" {
		cursor = "-"
	}
	for {
		reply, err := s.Eval(ctx, hashChunkScript, [][]byte{key}, []byte(ty), []byte(cursor), []byte("1000"))
		if err != nil {
			return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
		}
		vs, err := redis.Strings(reply, nil)
		if err != nil || len(vs) == 0 {
			return "", fmt.Errorf("%s: digest key %q: bad reply", s.Name, key)
		}
		cursor, vs = vs[0], vs[1:]
		if ty == "stream" && len(vs) > 0 {
			if first {
				io.WriteString(outer, vs[0]) // the last-generated-id, once
				first = false
			}
			vs = vs[1:]
		}
		for _, h := range vs {
			if unordered {
				seen[h] = struct{}{}
				continue
			}
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
	if unordered {
		parts := make([]string, 0, len(seen))
		for h := range seen {
			parts = append(parts, h)
		}
		sort.Strings(parts)
		io.WriteString(outer, strings.Join(parts, ","))
	}
	return hex.EncodeToString(outer.Sum(nil)), nil
}

// stringHash is sha1hex(len ':' value) of a string key: in one script up to
// 64 MiB, else streamed from chunks.
func stringHash(ctx context.Context, s *Store, key []byte) (string, error) {
	reply, err := s.Eval(ctx, stringHashScript, [][]byte{key}, []byte(strconv.Itoa(64<<20)))
	if err != nil {
		return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
	}
	if h, _ := redis.String(reply, nil); h != "" {
		return h, nil
	}
	n, err := redis.Int64(s.Do.Do(ctx, []byte("STRLEN"), key))
	if err != nil {
		return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
	}
	h := sha1.New()
	fmt.Fprintf(h, "%d:", n)
	const chunk = 1 << 20
	for off := int64(0); off < n; off += chunk {
		reply, err := s.Eval(ctx, chunkScript, [][]byte{key}, []byte("string"), []byte(strconv.FormatInt(off, 10)), []byte(strconv.Itoa(chunk)))
		if err != nil {
			return "", fmt.Errorf("%s: digest key %q: %w", s.Name, key, err)
		}
		vs, err := redis.ByteSlices(reply, nil)
		if err != nil || len(vs) != 2 {
			return "", fmt.Errorf("%s: digest key %q: bad reply", s.Name, key)
		}
		h.Write(vs[1])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// completeDigests fills in the digests readScript or digestScript left
// empty: those of big keys.
func completeDigests(ctx context.Context, s *Store, keys [][]byte, sums []Summary) error {
	for i := range sums {
		if sums[i].Digest != "" || sums[i].Type == "none" {
			continue
		}
		d, err := bigDigest(ctx, s, keys[i], sums[i].Type)
		if err != nil {
			return err
		}
		sums[i].Digest = d
	}
	return nil
}
