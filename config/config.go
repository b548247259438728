// Package config loads and validates the redisrepl TOML file (see docs/ARCHITECTURE.md and the README)
// and watches it for hot reload.
//
// The file has a [service] table, an optional [defaults] table whose fields are
// inherited by every [[link]] that does not set them, and one [[link]] table per
// replicated namespace. Validation is strict and reports every problem at once,
// each naming the file, the line and the field.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/redisrepl/redisrepl/dedup"
)

// DefaultPath is where the service looks for its configuration.
const DefaultPath = "/etc/redisrepl.toml"

// Direction is which way a link copies.
type Direction string

const (
	Push Direction = "push" // local → remote: the remote mirrors the local namespace
	Both Direction = "both" // and remote → local (the original -rc)
)

// Conflict is which side wins a key changed on both sides (direction both).
type Conflict string

const (
	LocalWins  Conflict = "local"
	RemoteWins Conflict = "remote"
)

// OnLocalReset is what a link in direction push does when the local
// namespace is found empty while the hub holds keys of it (the local Redis
// restarted without its data, or was flushed).
type OnLocalReset string

const (
	KeepRemote   OnLocalReset = "keep"    // keep the hub's copy, say so, copy new local writes
	MirrorReset  OnLocalReset = "mirror"  // delete the hub's copy: the hub mirrors the empty namespace
	RestoreLocal OnLocalReset = "restore" // copy the hub's copy back to the local side
)

// Defaults of the link settings that have one: the parser, link.New and the
// tests all take them from here (WithDefaults).
const (
	DefaultDirection       = Push
	DefaultConflict        = LocalWins
	DefaultOnLocalReset    = KeepRemote
	DefaultWorkers         = 8
	DefaultBatchKeys       = 256
	DefaultMaxRequestBytes = 900 * 1024 // nginx's default client_max_body_size is 1 MiB
	MinMaxRequestBytes     = 64 * 1024
	DefaultMaxDirtyKeys    = 1_000_000
	DefaultMaxValueBytes   = 512 << 20
	DefaultCanaryPrefix    = dedup.CanaryPrefix // + the link's name
)

// Duration is a time.Duration written in TOML as a string such as "10m" or "30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string ("90s", "10m", "1h30m").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (want e.g. \"30s\", \"10m\", \"1h\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in time.Duration.String form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Service holds the process-wide settings of the [service] table.
type Service struct {
	MetricsAddr string `toml:"metrics_addr"` // "" = off
	LogLevel    string `toml:"log_level"`    // debug|info|warn|error, default info
}

// Link is one [[link]] entry, with [defaults] and built-in defaults applied and
// every derived field filled in. Paths (Cert, Key, CA, LocalCA, LocalCert,
// LocalKey, StateFile) are resolved
// against the directory of the configuration file.
type Link struct {
	Name string

	Local         string // as written: redis://[user:pass@]host:port/db, rediss://..., host:port, :port
	LocalAddr     string // host:port (":6379" -> "127.0.0.1:6379")
	LocalDB       int    // from the URL path or the `db` field; default 0
	LocalUser     string
	LocalPassword string // never printed: see String
	LocalTLS      bool   // rediss://
	// LocalSentinel: local = "redis+sentinel://…" (sentinel.go); LocalAddr
	// is then its canonical form, not an address.
	LocalSentinel Sentinel
	// With LocalTLS: the CA that signed the local Redis's certificate ("" =
	// the system's CAs), and the client certificate and key presented to it
	// ("" = none).
	LocalCA, LocalCert, LocalKey string

	Namespace string // key prefix, non-empty
	Remote    string // https URL of Webdis behind the TLS proxy
	RemoteDB  int    // the db Webdis is configured with (for the keyspace channel)

	Cert, Key, CA string // client certificate, its key, the CA of the proxy

	Direction      Direction
	Conflict       Conflict // who wins a key changed on both sides
	OnLocalReset   OnLocalReset
	ResyncInterval Duration // 0 = no periodic resync
	StateFile      string   // "" = the caller decides
	// CanaryKey is the key the link writes now and then to prove that the
	// local side's keyspace events flow (link/health.go): outside every
	// namespace, DefaultCanaryPrefix + Name unless set.
	CanaryKey string

	Workers         int
	BatchKeys       int
	MaxRequestBytes int
	MaxDirtyKeys    int
	MaxValueBytes   int64
}

// WithDefaults is l with every setting that has a default and is not set
// (zero) given its default.
func (l Link) WithDefaults() Link {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.Direction == "" {
		l.Direction = DefaultDirection
	}
	if l.Conflict == "" {
		l.Conflict = DefaultConflict
	}
	if l.OnLocalReset == "" {
		l.OnLocalReset = DefaultOnLocalReset
	}
	set(&l.Workers, DefaultWorkers)
	set(&l.BatchKeys, DefaultBatchKeys)
	set(&l.MaxRequestBytes, DefaultMaxRequestBytes)
	set(&l.MaxDirtyKeys, DefaultMaxDirtyKeys)
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultMaxValueBytes
	}
	if l.CanaryKey == "" && l.Name != "" {
		l.CanaryKey = DefaultCanaryPrefix + l.Name
	}
	return l
}

// LocalRedacted is Local with any password replaced by "xxxxx".
func (l Link) LocalRedacted() string { return redactURL(l.Local) }

// RemoteRedacted is Remote with any password replaced by "xxxxx".
func (l Link) RemoteRedacted() string { return redactURL(l.Remote) }

func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// String describes the link without its password; fmt's %v and %+v use it.
func (l Link) String() string {
	return fmt.Sprintf("link %q (%s): %s namespace %q -> %s db %d",
		l.Name, l.Direction, l.LocalRedacted(), l.Namespace, l.RemoteRedacted(), l.RemoteDB)
}

// GoString keeps %#v from printing the password too.
func (l Link) GoString() string { return "config.Link{" + l.String() + "}" }

// Fingerprint is a digest of every setting of the link and of the contents of
// its certificate, key and CA files: when it changes, the link must restart.
func (l Link) Fingerprint() string {
	h := sha256.New()
	v := reflect.ValueOf(l)
	for i := 0; i < v.NumField(); i++ {
		fmt.Fprintf(h, "%s=%#v\n", v.Type().Field(i).Name, v.Field(i).Interface())
	}
	for _, p := range []string{l.Cert, l.Key, l.CA, l.LocalCA, l.LocalCert, l.LocalKey} {
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(h, "file %q: error %v\n", p, err)
			continue
		}
		fmt.Fprintf(h, "file %q: %d\n", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Config is a loaded, valid configuration file.
type Config struct {
	Path    string
	Service Service
	Links   []Link
}

// Load reads the file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates data, the contents of the file at path. Relative
// paths in it are resolved against path's directory, and the certificate, key
// and CA files are read to check them. The error is an *Error, or an ErrorList
// when there are several problems.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data)
}

// Error is one problem in a configuration file. Unknown parts are zero.
type Error struct {
	File  string
	Line  int    // 1-based; 0 = unknown
	Link  string // name of the [[link]], if known
	Index int    // 1-based position of the [[link]] in the file; 0 = not in a link
	Field string // e.g. "namespace", "defaults.cert", "service.log_level"
	Msg   string
}

// Error formats as FILE:LINE: link "NAME": FIELD: MSG, leaving out unknown parts.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Link != "":
		fmt.Fprintf(&b, "link %q: ", e.Link)
	case e.Index > 0:
		fmt.Fprintf(&b, "link #%d: ", e.Index)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is several problems, ordered by line; Error prints one per line.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find each *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
