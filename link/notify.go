package link

import (
	"context"
	"fmt"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
)

// notifyFlags are the keyspace notification classes a link needs: K
// (keyspace channel) and A (every type's commands, generic ones, expiry and
// eviction).
const notifyFlags = "KA"

// EnableNotifications makes sure the Redis behind do publishes keyspace
// events: it adds the classes a link needs to notify-keyspace-events,
// keeping the ones already set.
func EnableNotifications(ctx context.Context, do store.Doer, side string) error {
	current, err := notifySetting(ctx, do)
	if err != nil {
		return &notifyError{side: side, err: err}
	}
	want := mergeFlags(current, notifyFlags)
	if want == current {
		return nil
	}
	if _, err := do.Do(ctx, []byte("CONFIG"), []byte("SET"), []byte("notify-keyspace-events"), []byte(want)); err != nil {
		return &notifyError{side: side, err: err}
	}
	return nil
}

// notifySetting is the value of notify-keyspace-events of the Redis behind
// do.
func notifySetting(ctx context.Context, do store.Doer) (string, error) {
	v, err := do.Do(ctx, []byte("CONFIG"), []byte("GET"), []byte("notify-keyspace-events"))
	if err != nil {
		return "", err
	}
	vs, err := redis.Strings(v, nil)
	if err != nil || len(vs) != 2 {
		return "", fmt.Errorf("unexpected CONFIG GET reply %v", v)
	}
	return vs[1], nil
}

// mergeFlags adds to flags the classes of add that it lacks. 'A' stands for
// "g$lshzxet", so a set that has all of those counts as having 'A'.
func mergeFlags(flags, add string) string {
	has := func(c rune) bool {
		if strings.ContainsRune(flags, c) {
			return true
		}
		if c == 'A' {
			for _, x := range "g$lshzxet" {
				if !strings.ContainsRune(flags, x) {
					return false
				}
			}
			return true
		}
		return false
	}
	out := flags
	for _, c := range add {
		if !has(c) {
			out += string(c)
		}
	}
	return out
}

type notifyError struct {
	side string
	err  error
}

func (e *notifyError) Error() string {
	return fmt.Sprintf("%s: cannot enable keyspace notifications (CONFIG GET/SET notify-keyspace-events: %v); "+
		"set them yourself, e.g. 'notify-keyspace-events KA' in redis.conf (any value holding K and A, or K and g$lshzxet), "+
		"or allow CONFIG for redisrepl", e.side, e.err)
}

func (e *notifyError) Unwrap() error { return e.err }
