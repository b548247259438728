package link

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	if _, err := w.dst.Eval(w.ctx, stageScript, [][]byte{w.tmp}, args...); err != nil {
		return fmt.Errorf("%s: stage key %q: %w", w.dst.Name, w.key, err)
	}
	w.created = true
	w.args, w.size = w.args[:0], 0
	return nil
}
