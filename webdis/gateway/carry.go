package gateway

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/dedup"
)

// Values on the stream (docs/ARCHITECTURE.md, "Values on the hub's
// stream"). A link that asks with valuesHeader gets, with each
// keyspace event of its stream, the key's state as its own read script
// returns it, read by the gateway as the tenant after the event came: the
// link then needs no read across the WAN before it copies a hub change
// (one way instead of one way plus a round trip). The state read is the
// key's state after that event or a later one, as a read by the link
// would be; the link decides with it exactly as with a state it read.
//
// The script runs by SHA with EVALSHA_RO, so whatever link script a
// client names, it cannot write; it must be one of the link's scripts, and
// its limits are clamped so that values on the stream stay small (bigger
// keys come without a value: the link reads them itself).
type carry struct {
	sha  string
	args []any // max elements, max bytes per key, max bytes in all
	ks   []byte
	conn redis.Conn // the tenant's, for the reads
}

// valuesHeader is webdis.ValuesHeader (the gateway cannot import the
// client; canary_internal_test.go checks they agree).
const valuesHeader = "X-Redisrepl-Values"

// Clamps of what one event may carry: small values travel with their
// event; the rest is read by the link as without values.
const (
	carryMaxElems = 4096
	carryMaxBytes = 64 << 10
	// carryBatch is the most events whose states are read in one round
	// trip to Redis (pipelined): a burst of events costs the stream a read
	// per batch, not per event.
	carryBatch = 256
)

// parseCarry reads a values request, "sha max_elems max_bytes
// max_batch_bytes"; ok is false for anything else (the stream is then
// served without values).
func parseCarry(h string) (sha string, args []any, ok bool) {
	f := strings.Fields(h)
	if len(f) != 4 || !slices.Contains(linkScriptSHAs, strings.ToLower(f[0])) {
		return "", nil, false
	}
	clamp := []int64{carryMaxElems, carryMaxBytes, carryMaxBytes}
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return "", nil, false
		}
		args = append(args, min(n, clamp[i]))
	}
	return strings.ToLower(f[0]), args, true
}

// newCarry returns the values of a stream of t, or nil when r does not
// ask for them, the format is not RESP (the link's), or no connection to
// read them can be had (the stream goes on without values).
func (g *Gateway) newCarry(r *http.Request, t *tenant, c *command, sub *subscription) *carry {
	// On a cluster hub a key's node is not the stream's: no values there
	// (the link reads as without them).
	if c.format != fmtRaw || !sub.pattern || sub.readOnly || g.backend != nil {
		return nil
	}
	sha, args, ok := parseCarry(r.Header.Get(valuesHeader))
	if !ok {
		return nil
	}
	conn, err := t.dial(commandTimeout)
	if err != nil {
		return nil
	}
	return &carry{sha: sha, args: args, ks: []byte(dedup.KeyspaceChannel(g.cfg.RedisDB)), conn: conn}
}

func (cr *carry) Close() {
	if cr != nil {
		cr.conn.Close()
	}
}

// attach reads, in one pipelined round trip, the state of the key of each
// keyspace message of msgs, and appends it to the message as a fifth
// field. A read that fails (NOSCRIPT: the link has not loaded its script
// yet; NOPERM: a key the tenant may not read) leaves its message as it
// is. An error of the connection itself ends the values of this stream
// (the stream goes on without them).
func (cr *carry) attach(msgs []any) bool {
	var idx []int
	for i, m := range msgs {
		f, ok := m.([]any)
		if !ok || len(f) != 4 {
			continue
		}
		kind, _ := f[0].([]byte)
		ch, _ := f[2].([]byte)
		if string(kind) != "pmessage" || !bytes.HasPrefix(ch, cr.ks) || len(ch) == len(cr.ks) {
			continue
		}
		args := append([]any{cr.sha, 1, ch[len(cr.ks):]}, cr.args...)
		if err := cr.conn.Send("EVALSHA_RO", args...); err != nil {
			return false
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return true
	}
	if err := cr.conn.Flush(); err != nil {
		return false
	}
	for _, i := range idx {
		v, err := cr.conn.Receive()
		if err != nil {
			if _, isReply := err.(redis.Error); isReply {
				continue
			}
			return false
		}
		f := msgs[i].([]any)
		msgs[i] = []any{f[0], f[1], f[2], f[3], v}
	}
	return true
}
