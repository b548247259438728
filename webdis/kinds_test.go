package webdis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/gomodule/redigo/redis"
)

// TestClassifyGivesEachReplyItsKind: the replies and failures the link
// meets get the kind that decides what it does (retry the side, give up on
// the key, take it as an answer), and keep their message and type.
func TestClassifyGivesEachReplyItsKind(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want []error // kinds it must be; every other kind it must not be
	}{
		{"webdis 403", &Error{Kind: KindForbidden}, []error{ErrRefused}},
		{"nginx 413", &Error{Kind: KindTooLarge}, []error{ErrTooLarge, ErrPermanent}},
		{"unreachable", &Error{Kind: KindUnreachable}, []error{ErrTransient}},
		{"webdis 503", &Error{Kind: KindUnavailable}, []error{ErrTransient}},
		{"bad request", &Error{Kind: KindUnknown}, nil},
		{"loading", redis.Error("LOADING Redis is loading the dataset in memory"), []error{ErrTransient}},
		{"busy script", redis.Error("BUSY Redis is busy running a script"), []error{ErrTransient}},
		{"wrong password", redis.Error("WRONGPASS invalid username-password pair"), []error{ErrTransient}},
		{"acl", redis.Error("NOPERM this user has no permissions to run the 'eval' command"), []error{ErrRefused}},
		{"renamed command", redis.Error("ERR unknown command 'MSET', with args beginning with:"), []error{ErrRefused}},
		{"gateway value limit", redis.Error("ERR gateway: over the tenant's max_value_bytes (1048576)"), []error{ErrTooLarge, ErrPermanent}},
		{"gateway other limit", redis.Error("ERR gateway: over the tenant's max_elements (1000)"), nil},
		{"wrong type", redis.Error("WRONGTYPE Operation against a key holding the wrong kind of value"), nil},
		{"busy key is no busy", redis.Error("BUSYKEY Target key name already exists."), nil},
		{"connection reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, []error{ErrTransient}},
		{"eof", fmt.Errorf("read: %w", io.EOF), []error{ErrTransient}},
		{"deadline", context.DeadlineExceeded, []error{ErrTransient}},
		{"pool closed", errors.New("redigo: get on closed pool"), []error{ErrTransient}},
		{"a key too big", WithKind(errors.New("key \"k\" does not fit in one request"), ErrTooLarge), []error{ErrTooLarge, ErrPermanent}},
		{"one key's problem", errors.New("key \"k\" is outside the namespace"), nil},
	}
	kinds := map[error]string{ErrTransient: "transient", ErrRefused: "refused", ErrTooLarge: "too large", ErrPermanent: "permanent"}
	for _, c := range cases {
		got := Classify(fmt.Errorf("side: %w", c.err))
		for k, name := range kinds {
			want := false
			for _, w := range c.want {
				want = want || w == k
			}
			if errors.Is(got, k) != want {
				t.Errorf("%s: errors.Is(Classify(err), %s) = %v, want %v", c.name, name, !want, want)
			}
		}
		if got.Error() != "side: "+c.err.Error() {
			t.Errorf("%s: message %q, want it unchanged", c.name, got.Error())
		}
		var re redis.Error
		if errors.As(c.err, &re) && !errors.As(got, &re) {
			t.Errorf("%s: the reply is no longer a redis.Error", c.name)
		}
		if again := Classify(got); again != got {
			t.Errorf("%s: classifying twice wraps again", c.name)
		}
	}
}
