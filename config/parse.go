package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The parser core the service's file (validate_link.go) and the gateway's
// file (gateway.go) share: decoding, where each key is written (lines.go),
// the list of problems, the typed reads of values, and the certificate,
// key and CA checks (validate_tls.go).

// core is the state of one parse: the file, its lines, the problems found
// so far, and the certificate, key and CA files read.
type core struct {
	file, dir string
	lines     lines
	errs      ErrorList
	seen      map[string]bool
	files     map[string]fileCheck
}

type fileCheck struct {
	data []byte
	err  error
}

// decode reads data, the TOML file at path, into raw tables and a parser
// core; a syntax error is an *Error naming the line.
func decode(path string, data []byte) (*core, map[string]any, error) {
	c := &core{file: path, dir: filepath.Dir(path), lines: indexLines(data),
		seen: map[string]bool{}, files: map[string]fileCheck{}}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &Error{File: path, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, nil, &Error{File: path, Msg: err.Error()}
	}
	return c, raw, nil
}

// record adds e, unless the same problem is known already (a bad
// [defaults] value is reported once, not once per link).
func (c *core) record(e *Error) {
	if s := e.Error(); !c.seen[s] {
		c.seen[s] = true
		c.errs = append(c.errs, e)
	}
}

// unknownTop records a top-level key that is not part of the schema.
func (c *core) unknownTop(key string) {
	c.record(&Error{File: c.file, Line: c.lines.line("", 0, key), Msg: fmt.Sprintf("unknown field %q", key)})
}

// result is nil, the one problem found, or all of them ordered by line.
func (c *core) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
	if len(c.errs) == 1 {
		return c.errs[0]
	}
	return c.errs
}

// path is the file path s, relative paths taken from the file's directory.
func (c *core) path(s string) string {
	if s != "" && !filepath.IsAbs(s) {
		return filepath.Join(c.dir, s)
	}
	return s
}

// readFile reads path once per parse, however many fields name it.
func (c *core) readFile(path string) ([]byte, error) {
	f, ok := c.files[path]
	if !ok {
		f.data, f.err = os.ReadFile(path)
		c.files[path] = f
	}
	return f.data, f.err
}

// failure records a problem of one field: a format and its arguments.
type failure func(format string, args ...any)

// Typed reads: each reports a wrong type or range through fail and
// returns ok = false.

func gwStr(fail failure, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		fail("must be a string, not %s", typeName(v))
	}
	return s, ok
}

func gwInt(fail failure, v any, lo, hi int64) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		fail("must be an integer, not %s", typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		fail("%d: must be from %d to %d", n, lo, hi)
		return n, false
	}
	return n, true
}

// gwOneOf is a string that must be one of allowed.
func gwOneOf(fail failure, v any, allowed ...string) (string, bool) {
	s, ok := gwStr(fail, v)
	if ok && !slices.Contains(allowed, s) {
		fail("%q: must be one of %s", s, strings.Join(allowed, ", "))
		return s, false
	}
	return s, ok
}

func gwDuration(fail failure, v any, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := gwStr(fail, v)
	if !ok {
		return 0, false
	}
	var d Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		fail("%v", err)
		return 0, false
	}
	if d.Duration < lo || d.Duration > hi {
		fail("%s: must be from %v to %v", s, lo, hi)
		return 0, false
	}
	return d.Duration, true
}

func gwStrings(fail failure, v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		fail("must be an array of strings, not %s", typeName(v))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			fail("must be an array of strings; holds %s", typeName(e))
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// gwAddr is a host:port string; with optional, "" is one too (off).
func gwAddr(fail failure, v any, optional bool) (string, bool) {
	s, ok := gwStr(fail, v)
	if ok && (s != "" || !optional) {
		if _, err := hostPort(s, false); err != nil {
			fail("%v", err)
		}
	}
	return s, ok
}

// gwNonEmpty is a string that must not be empty.
func gwNonEmpty(fail failure, v any) (string, bool) {
	s, ok := gwStr(fail, v)
	if ok && s == "" {
		fail("must not be empty")
	}
	return s, ok
}

// gwFile is a file path that must not be empty, resolved against the
// file's directory.
func (c *core) gwFile(fail failure, v any) (string, bool) {
	s, ok := gwNonEmpty(fail, v)
	return c.path(s), ok && s != ""
}

// logLevels are the values of log_level, in both files.
var logLevels = []string{"debug", "info", "warn", "error"}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}
