package webdis

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/gomodule/redigo/redis"
)

// Error kinds: what a caller does about an error (docs/ARCHITECTURE.md,
// "Errors"), checked with errors.Is on an error Classify gave its kind.
var (
	// ErrTransient: the side as a whole cannot serve now (unreachable, a
	// broken connection or TLS, loading, busy, out of memory, read-only,
	// its credentials refused): wait and retry, with backoff.
	ErrTransient = errors.New("transient")
	// ErrRefused: the side answered, and refused the command (Webdis's or
	// the gateway's 403, an ACL's NOPERM, a renamed or unknown command).
	ErrRefused = errors.New("refused")
	// ErrPermanent: retrying the same request fails the same way.
	ErrPermanent = errors.New("permanent")
	// ErrTooLarge: over a size limit (a front's body limit, the gateway's
	// max_value_bytes, a key that fits no request). It is ErrPermanent.
	ErrTooLarge = &kindError{msg: "too large", kind: ErrPermanent}
)

// kindError is an error with a kind: its message is err's (or msg), and
// errors.Is and errors.As see both err and kind.
type kindError struct {
	err  error
	msg  string
	kind error
}

func (e *kindError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.err.Error()
}

func (e *kindError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.err, e.kind}
}

// WithKind is err of kind (one of the Err* above), its message unchanged.
func WithKind(err, kind error) error {
	if err == nil {
		return nil
	}
	return &kindError{err: err, kind: kind}
}

// Is makes a failed request match the kind of its Kind.
func (e *Error) Is(target error) bool {
	switch e.Kind {
	case KindUnknown:
		return false
	case KindForbidden:
		return target == ErrRefused
	case KindTooLarge:
		return target == ErrTooLarge || target == ErrPermanent
	}
	return target == ErrTransient
}

// replyKinds are the error codes of Redis replies (their first word) that
// have a kind; any other error reply is about the command or key itself.
var replyKinds = map[string]error{
	"LOADING": ErrTransient, "BUSY": ErrTransient, "TRYAGAIN": ErrTransient, "MASTERDOWN": ErrTransient,
	"OOM": ErrTransient, "MISCONF": ErrTransient, "READONLY": ErrTransient, "NOSCRIPT": ErrTransient,
	"NOAUTH": ErrTransient, "WRONGPASS": ErrTransient,
	"NOPERM": ErrRefused,
}

// The replies that carry their kind in their text after the generic ERR
// code: Redis's to a command it does not know (renamed away), and the
// gateway's to a value over a tenant's max_value_bytes
// (webdis/gateway/guard.go, limitError).
const (
	unknownCommandReply = "ERR unknown command"
	gatewayValueLimit   = "ERR gateway: over the tenant's max_value_bytes"
)

// Classify is err with its kind, if it has one: the one place where the
// replies of Redis, Webdis and the gateway, and the failures of the way to
// them, get theirs.
//   - a failed request (*Error) has the kind of its Kind;
//   - an error reply (redis.Error) the kind of its code (replyKinds), or
//     of its text where the code is the generic ERR;
//   - a broken or closed connection, a deadline, an end of ctx, and
//     redigo's own errors (a pool closed or exhausted, a reply of an
//     unexpected type, which it does not export as values) are transient.
//
// Anything else is returned as it is: the problem of one key.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		ke *kindError
		we *Error
		re redis.Error
		ne net.Error
	)
	switch {
	case errors.As(err, &ke), errors.As(err, &we):
		return err
	case errors.As(err, &re):
		code, _, _ := strings.Cut(string(re), " ")
		if k := replyKinds[code]; k != nil {
			return WithKind(err, k)
		}
		switch s := string(re); {
		case strings.HasPrefix(s, unknownCommandReply):
			return WithKind(err, ErrRefused)
		case strings.HasPrefix(s, gatewayValueLimit):
			return WithKind(err, ErrTooLarge)
		}
		return err
	case errors.As(err, &ne), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "redigo: "):
		return WithKind(err, ErrTransient)
	}
	return err
}
