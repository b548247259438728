package webdistest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// Key is what a test compares of one key: its type, its contents in a
// canonical text form (binary-safe, %q-quoted) and its expiry as a unix
// time in ms (0: none), so that dumps read seconds apart still compare.
//
// It reads keys with plain commands, independently of redisrepl's Lua
// scripts, so that a bug in those cannot hide itself.
type Key struct {
	Type     string
	Contents string
	ExpireAt int64
}

// expireAt turns PEXPIRETIME's reply (unix ms; -1 no TTL, -2 no key) into
// Key.ExpireAt. Redis's own absolute time, unlike now+PTTL, does not drift
// with the time the dump takes to read.
func expireAt(t int64) int64 {
	if t < 0 {
		return 0
	}
	return t
}

// Dump reads every key of c whose name starts with prefix (staging keys of
// redisrepl included, which a finished copy never leaves behind; nothing
// else a link writes for its own purposes lives in a namespace).
func Dump(c redis.Conn, prefix string) (map[string]Key, error) {
	out := make(map[string]Key)
	cursor := "0"
	for {
		vs, err := redis.Values(c.Do("SCAN", cursor, "COUNT", 1000))
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		cursor, _ = redis.String(vs[0], nil)
		keys, _ := redis.Strings(vs[1], nil)
		var mine []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				mine = append(mine, k)
			}
		}
		if err := readKeys(c, mine, out); err != nil {
			return nil, err
		}
		if cursor == "0" {
			return out, nil
		}
	}
}

// readKeys reads keys into out, pipelining the commands of simple keys.
func readKeys(c redis.Conn, keys []string, out map[string]Key) error {
	for _, k := range keys {
		c.Send("TYPE", k)
	}
	if err := c.Flush(); err != nil {
		return err
	}
	types := make([]string, len(keys))
	for i := range keys {
		t, err := redis.String(c.Receive())
		if err != nil {
			return err
		}
		types[i] = t
	}
	// Strings are read in a pipeline (GET then PEXPIRETIME); other types one by one.
	var strs []string
	for i, k := range keys {
		if types[i] == "string" {
			strs = append(strs, k)
			c.Send("GET", k)
			c.Send("PEXPIRETIME", k)
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	for _, k := range strs {
		v, err1 := redis.String(c.Receive())
		pttl, err2 := redis.Int64(c.Receive())
		if err1 == redis.ErrNil {
			continue // gone meanwhile
		}
		if err1 != nil || err2 != nil {
			return fmt.Errorf("key %q: %v %v", k, err1, err2)
		}
		out[k] = Key{Type: "string", Contents: fmt.Sprintf("%q", v), ExpireAt: expireAt(pttl)}
	}
	for i, k := range keys {
		if types[i] == "string" || types[i] == "none" {
			continue
		}
		kd, err := ReadKey(c, k)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if kd.Type != "none" {
			out[k] = kd
		}
	}
	return nil
}

// changedMeanwhile says whether err is a key's type changing (WRONGTYPE) or
// the key going (XINFO's "no such key": a staging key renamed into place)
// between its TYPE and its read: it is read again.
func changedMeanwhile(err error) bool {
	s := err.Error()
	return strings.Contains(s, "WRONGTYPE") || strings.Contains(s, "no such key")
}

// ReadKey reads one key as Dump does (Type "none" when there is none), and
// reads it again when it changes type or goes between its TYPE and its read.
func ReadKey(c redis.Conn, k string) (Key, error) {
	kd, err := readKey(c, k)
	for try := 0; err != nil && changedMeanwhile(err) && try < 5; try++ {
		kd, err = readKey(c, k)
	}
	return kd, err
}

// Items splits Contents back into its elements, as read: a string's value;
// a hash's "field"="value" pairs; a list's, set's or sorted set's members
// (a sorted set's each followed by its score); a stream's last ID and
// entries.
func (k Key) Items() []string {
	var out []string
	for rest := k.Contents; rest != ""; {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return append(out, rest)
		}
		item, _ := strconv.Unquote(q)
		out = append(out, item)
		rest = strings.TrimPrefix(rest[len(q):], ",")
	}
	return out
}

func readKey(c redis.Conn, k string) (Key, error) {
	typ, err := redis.String(c.Do("TYPE", k))
	if err != nil {
		return Key{}, err
	}
	pttl, err := redis.Int64(c.Do("PEXPIRETIME", k))
	if err != nil {
		return Key{}, err
	}
	var items []string
	switch typ {
	case "none":
		return Key{Type: typ}, nil
	case "string":
		v, err := redis.String(c.Do("GET", k))
		if err != nil {
			return Key{}, err
		}
		items = []string{v}
	case "hash":
		m, err := redis.StringMap(c.Do("HGETALL", k))
		if err != nil {
			return Key{}, err
		}
		for f, v := range m {
			items = append(items, fmt.Sprintf("%q=%q", f, v))
		}
		sort.Strings(items)
	case "list":
		if items, err = redis.Strings(c.Do("LRANGE", k, 0, -1)); err != nil {
			return Key{}, err
		}
	case "set":
		if items, err = redis.Strings(c.Do("SMEMBERS", k)); err != nil {
			return Key{}, err
		}
		sort.Strings(items)
	case "zset":
		if items, err = redis.Strings(c.Do("ZRANGE", k, 0, -1, "WITHSCORES")); err != nil {
			return Key{}, err
		}
	case "stream":
		info, err := redis.Values(c.Do("XINFO", "STREAM", k))
		if err != nil {
			return Key{}, err
		}
		for i := 0; i+1 < len(info); i += 2 {
			if name, _ := redis.String(info[i], nil); name == "last-generated-id" {
				last, _ := redis.String(info[i+1], nil)
				items = append(items, "last="+last)
			}
		}
		entries, err := redis.Values(c.Do("XRANGE", k, "-", "+"))
		if err != nil {
			return Key{}, err
		}
		for _, e := range entries {
			ev, _ := redis.Values(e, nil)
			id, _ := redis.String(ev[0], nil)
			fields, _ := redis.Strings(ev[1], nil)
			items = append(items, fmt.Sprintf("%s%q", id, fields))
		}
	default:
		return Key{}, fmt.Errorf("unexpected type %q", typ)
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return Key{Type: typ, Contents: strings.Join(q, ","), ExpireAt: expireAt(pttl)}, nil
}

// Diff lists the differences between two dumps, with TTLs compared within
// ttlTolerance ms. It is empty when they are equal.
func Diff(local, remote map[string]Key, ttlTolerance int64) []string {
	var out []string
	for k, l := range local {
		r, ok := remote[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%q: missing on the remote", k))
		case l.Type != r.Type:
			out = append(out, fmt.Sprintf("%q: type %s locally, %s remotely", k, l.Type, r.Type))
		case l.Contents != r.Contents:
			out = append(out, fmt.Sprintf("%q (%s): contents differ: local %.200s, remote %.200s", k, l.Type, l.Contents, r.Contents))
		case (l.ExpireAt == 0) != (r.ExpireAt == 0) || abs(l.ExpireAt-r.ExpireAt) > ttlTolerance:
			out = append(out, fmt.Sprintf("%q: expires at %d locally, %d remotely (unix ms, 0 = never)", k, l.ExpireAt, r.ExpireAt))
		}
	}
	for k := range remote {
		if _, ok := local[k]; !ok {
			out = append(out, fmt.Sprintf("%q: only on the remote", k))
		}
	}
	sort.Strings(out)
	return out
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
