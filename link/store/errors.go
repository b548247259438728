package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// UnsupportedError names keys that this side cannot replicate: streams and
// module types where scripts are refused (plain commands cannot carry them
// through Webdis) and DUMP/RESTORE cannot either (plain_dump.go).
type UnsupportedError struct {
	Keys [][]byte
	ty   string
	why  string
}

func (e *UnsupportedError) Error() string {
	var b strings.Builder
	switch len(e.Keys) {
	case 0:
	case 1:
		fmt.Fprintf(&b, "key %q not replicated: ", e.Keys[0])
	default:
		b.WriteString("keys ")
		for i, k := range e.Keys {
			if i == 5 {
				fmt.Fprintf(&b, " and %d more", len(e.Keys)-5)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", k)
		}
		b.WriteString(" not replicated: ")
	}
	b.WriteString(e.why)
	return b.String()
}

// Has says whether key is one of the keys left out.
func (e *UnsupportedError) Has(key []byte) bool {
	for _, k := range e.Keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// because adds to e why RESTORE could not carry its keys either (see
// plain_dump.go); "" adds nothing.
func (e *UnsupportedError) because(restoreRefused string) *UnsupportedError {
	if restoreRefused != "" {
		e.why += " (DUMP and RESTORE, which could carry it, are refused: " + restoreRefused + ")"
	}
	return e
}

// unsupportedKeys gathers the keys of several UnsupportedErrors.
type unsupportedKeys struct {
	keys  [][]byte
	ty    string // their type, "" when they differ
	why   string // their reason, when they all have the same
	mixed bool   // their reasons differ
}

// add takes in the keys of err if it is an UnsupportedError, and says so.
func (u *unsupportedKeys) add(err error) bool {
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		return false
	}
	if len(u.keys) == 0 {
		u.ty, u.why = ue.ty, ue.why
	} else {
		if u.ty != ue.ty {
			u.ty = ""
		}
		u.mixed = u.mixed || u.why != ue.why
	}
	u.keys = append(u.keys, ue.Keys...)
	return true
}

// err is the error naming the keys gathered, nil if none; restoreRefused
// is why RESTORE could not carry them either, if it was tried.
func (u *unsupportedKeys) err(side, restoreRefused string) error {
	if len(u.keys) == 0 {
		return nil
	}
	e := unsupported(u.ty, u.keys...)
	if !u.mixed && u.why != "" {
		e.why = u.why
	}
	return fmt.Errorf("%s: %w", side, e.because(restoreRefused))
}

// unsupported is the error for keys of type ty ("" when they differ).
func unsupported(ty string, keys ...[]byte) *UnsupportedError {
	what := "a " + ty
	switch ty {
	case "stream":
	case "":
		what = "streams and module types"
	default:
		what = "type " + strconv.Quote(ty)
	}
	return &UnsupportedError{Keys: keys, ty: ty, why: what + " cannot be read or written with plain commands, and this side refuses scripts (EVAL): allow EVAL and EVALSHA on the hub to replicate it"}
}

// errChanged: a key changed while plain commands read it; read it again.
var errChanged = errors.New("key changed while read")
