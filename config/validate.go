package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// origin says where a value was written: in [service], in [defaults] or in
// the [[link]] number index (named name).
type origin struct {
	section string
	index   int
	name    string
}

var (
	inService  = origin{section: "service"}
	inDefaults = origin{section: "defaults"}
)

// draft is a link being built, with where each of its fields came from.
type draft struct {
	Link
	self      origin            // the [[link]] table itself
	from      map[string]origin // TOML key -> where its value was written
	urlDB     int               // db in the local URL's path, -1 if none
	dbField   int               // the `db` field, -1 if none
	remoteKey string            // normalised remote URL, "" if invalid
	disabled  bool              // enabled = false: validated, its files not read, not run
}

type parser struct {
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

// decode reads data, the TOML file at path, into raw tables and a parser of
// its values; a syntax error is an *Error naming the line.
func decode(path string, data []byte) (*parser, map[string]any, error) {
	p := &parser{file: path, dir: filepath.Dir(path), lines: indexLines(data),
		seen: map[string]bool{}, files: map[string]fileCheck{}}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &Error{File: path, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, nil, &Error{File: path, Msg: err.Error()}
	}
	return p, raw, nil
}

func parse(path string, data []byte) (*Config, error) {
	p, raw, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Path: path, Service: Service{LogLevel: "info"}}
	base := draft{Link: Link{}.WithDefaults(), from: map[string]origin{}, urlDB: -1, dbField: -1}
	var linkTables []map[string]any
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		switch v := raw[k]; k {
		case "service":
			if t, ok := p.table(origin{}, k, v); ok {
				p.service(t, &cfg.Service)
			}
		case "defaults":
			if t, ok := p.table(origin{}, k, v); ok {
				for _, key := range slices.Sorted(maps.Keys(t)) {
					p.set(&base, inDefaults, key, t[key])
				}
			}
		case "link":
			ts, ok := v.([]map[string]any)
			if !ok {
				p.fail(origin{}, k, "must be written as [[link]] tables")
				continue
			}
			linkTables = ts
		default:
			p.unknown(origin{}, k)
		}
	}
	if raw["link"] == nil {
		p.fail(origin{}, "", "no [[link]] entries")
	}
	var drafts []*draft
	for i, t := range linkTables {
		drafts = append(drafts, p.link(i+1, t, base))
	}
	p.crossCheck(drafts)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
		if len(p.errs) == 1 {
			return nil, p.errs[0]
		}
		return nil, p.errs
	}
	for _, d := range drafts {
		if !d.disabled {
			cfg.Links = append(cfg.Links, d.Link)
		}
	}
	return cfg, nil
}

// fail records a problem with field key (or with the table, for key "") written at o.
func (p *parser) fail(o origin, key, format string, args ...any) {
	p.add(o, key, p.lines.line(o.section, o.index, key), fmt.Sprintf(format, args...))
}

// unknown records a field that is not part of the schema.
func (p *parser) unknown(o origin, key string) {
	p.add(o, "", p.lines.line(o.section, o.index, key), fmt.Sprintf("unknown field %q", key))
}

func (p *parser) add(o origin, key string, line int, msg string) {
	e := &Error{File: p.file, Line: line, Field: key, Msg: msg}
	switch o.section {
	case "link":
		e.Link, e.Index = o.name, o.index
	case "service", "defaults":
		e.Field = strings.TrimSuffix(o.section+"."+key, ".")
	}
	if s := e.Error(); !p.seen[s] { // a bad [defaults] value is reported once, not once per link
		p.seen[s] = true
		p.errs = append(p.errs, e)
	}
}

func (p *parser) service(t map[string]any, s *Service) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		switch k {
		case "metrics_addr":
			if a, ok := p.str(inService, k, v); ok && a != "" {
				if _, err := hostPort(a, false); err != nil {
					p.fail(inService, k, "%v", err)
				}
				s.MetricsAddr = a
			}
		case "log_level":
			if l, ok := p.oneOf(inService, k, v, "debug", "info", "warn", "error"); ok {
				s.LogLevel = l
			}
		default:
			p.unknown(inService, k)
		}
	}
}

// link builds the [[link]] number index from its table on top of base.
func (p *parser) link(index int, t map[string]any, base draft) *draft {
	d := base
	d.from = maps.Clone(base.from)
	d.self = origin{section: "link", index: index}
	if n, ok := t["name"].(string); ok {
		d.self.name = n
	} else if _, set := t["name"]; !set {
		d.self.name = base.Name
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		p.set(&d, d.self, k, t[k])
	}
	for _, k := range []string{"name", "local", "namespace", "remote", "cert", "key", "ca"} {
		if _, ok := d.from[k]; !ok {
			p.fail(d.self, k, "required (in the [[link]] or in [defaults])")
		}
	}
	d.LocalDB = max(d.urlDB, 0)
	if d.dbField >= 0 {
		if d.urlDB >= 0 && d.urlDB != d.dbField {
			o, k := d.from["db"], "db"
			if o.section != "link" {
				o, k = d.from["local"], "local"
			}
			p.fail(o, k, "db %d in the local URL conflicts with db = %d", d.urlDB, d.dbField)
		}
		d.LocalDB = d.dbField
	}
	d.Link = d.Link.WithDefaults() // the canary key's default needs the name
	if d.Namespace != "" && strings.HasPrefix(d.CanaryKey, d.Namespace) {
		p.canaryInside(&d, &d)
	}
	p.checkLocalTLS(&d)
	if !d.disabled {
		p.checkFiles(&d)
	}
	return &d
}

// canaryInside reports that the canary key of d lies in the namespace of
// link in (maybe d itself): the canary must stay outside every replicated
// namespace (docs/ARCHITECTURE.md, "Health").
func (p *parser) canaryInside(d, in *draft) {
	o, at := d.from["canary_key"], "canary_key"
	if _, set := d.from["canary_key"]; !set {
		o, at = d.from["name"], "name" // the default comes from the name
	}
	whose := "its own namespace"
	if in != d {
		whose = fmt.Sprintf("the namespace of link %q (line %d) on the same local Redis", in.Name, p.lines.line("link", in.self.index, ""))
	}
	p.add(o, "canary_key", p.lines.line(o.section, o.index, at),
		fmt.Sprintf("%q lies in %s %q: the canary key must be outside every replicated namespace (set canary_key)",
			d.CanaryKey, whose, in.Namespace))
}

// checkLocalTLS checks that local_ca, local_cert and local_key go with a
// rediss:// local URL, and local_cert with local_key.
func (p *parser) checkLocalTLS(d *draft) {
	for _, k := range []string{"local_ca", "local_cert", "local_key"} {
		if o, set := d.from[k]; set && d.LocalAddr != "" && !d.LocalTLS {
			p.fail(o, k, "a TLS setting of the local Redis, but local is not a rediss:// URL (write local = \"rediss://host:port/db\")")
		}
	}
	cert, hasCert := d.from["local_cert"]
	key, hasKey := d.from["local_key"]
	switch {
	case hasCert && !hasKey:
		p.fail(cert, "local_cert", "needs local_key, the key of the client certificate")
	case hasKey && !hasCert:
		p.fail(key, "local_key", "needs local_cert, the client certificate of the key")
	}
}

// set validates value v of field key, written at o, and stores it in d.
func (p *parser) set(d *draft, o origin, key string, v any) {
	if !slices.Contains(linkKeys, key) {
		p.unknown(o, key)
		return
	}
	d.from[key] = o
	switch key {
	case "enabled":
		if b, ok := v.(bool); ok {
			d.disabled = !b
		} else {
			p.fail(o, key, "must be true or false")
		}
	case "name":
		if s, ok := p.str(o, key, v); ok {
			if !validName(s) {
				p.fail(o, key, "%q: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'", s)
			}
			d.Name = s
		}
	case "local":
		if s, ok := p.str(o, key, v); ok {
			d.Local = s
			if err := parseLocal(s, d); err != nil {
				p.fail(o, key, "%v", err)
			}
		}
	case "db":
		if n, ok := p.integer(o, key, v, 0, 1<<31-1); ok {
			d.dbField = int(n)
		}
	case "namespace":
		if s, ok := p.str(o, key, v); ok {
			if s == "" {
				p.fail(o, key, "must not be empty")
			}
			d.Namespace = s
		}
	case "remote":
		if s, ok := p.str(o, key, v); ok {
			d.Remote, d.remoteKey = s, ""
			k, err := parseRemote(s)
			if err != nil {
				p.fail(o, key, "%v", err)
			}
			d.remoteKey = k
		}
	case "remote_db":
		if n, ok := p.integer(o, key, v, 0, 1<<31-1); ok {
			d.RemoteDB = int(n)
		}
	case "cert", "key", "ca", "state_file", "local_ca", "local_cert", "local_key":
		if s, ok := p.str(o, key, v); ok {
			if s == "" && key != "state_file" {
				p.fail(o, key, "must not be empty")
			}
			if s != "" && !filepath.IsAbs(s) {
				s = filepath.Join(p.dir, s)
			}
			switch key {
			case "cert":
				d.Cert = s
			case "key":
				d.Key = s
			case "ca":
				d.CA = s
			case "local_ca":
				d.LocalCA = s
			case "local_cert":
				d.LocalCert = s
			case "local_key":
				d.LocalKey = s
			default:
				d.StateFile = s
			}
		}
	case "canary_key":
		if s, ok := p.str(o, key, v); ok {
			if s == "" {
				p.fail(o, key, "must not be empty")
			}
			d.CanaryKey = s
		}
	case "direction":
		if s, ok := p.oneOf(o, key, v, string(Push), string(Both)); ok {
			d.Direction = Direction(s)
		}
	case "conflict":
		if s, ok := p.oneOf(o, key, v, string(LocalWins), string(RemoteWins)); ok {
			d.Conflict = Conflict(s)
		}
	case "on_local_reset":
		if s, ok := p.oneOf(o, key, v, string(KeepRemote), string(MirrorReset), string(RestoreLocal)); ok {
			d.OnLocalReset = OnLocalReset(s)
		}
	case "resync_interval":
		if n, ok := v.(int64); ok && n == 0 {
			d.ResyncInterval = Duration{}
			return
		}
		if s, ok := p.str(o, key, v); ok {
			var dur Duration
			switch err := dur.UnmarshalText([]byte(s)); {
			case err != nil:
				p.fail(o, key, "%v", err)
			case dur.Duration < 0 || dur.Duration > 0 && dur.Duration < time.Second:
				p.fail(o, key, "%s: must be 0 (off) or at least 1s", s)
			}
			d.ResyncInterval = dur
		}
	case "workers":
		d.Workers = int(p.intOr(o, key, v, 1, 256, int64(d.Workers)))
	case "batch_keys":
		d.BatchKeys = int(p.intOr(o, key, v, 1, 10000, int64(d.BatchKeys)))
	case "max_request_bytes":
		d.MaxRequestBytes = int(p.intOr(o, key, v, MinMaxRequestBytes, 1<<30, int64(d.MaxRequestBytes)))
	case "max_dirty_keys":
		d.MaxDirtyKeys = int(p.intOr(o, key, v, 1, 1<<31-1, int64(d.MaxDirtyKeys)))
	case "max_value_bytes":
		d.MaxValueBytes = p.intOr(o, key, v, 1, 1<<62, d.MaxValueBytes)
	}
}

var linkKeys = []string{"name", "local", "db", "namespace", "remote", "remote_db", "cert", "key", "ca",
	"local_ca", "local_cert", "local_key",
	"direction", "conflict", "on_local_reset", "resync_interval", "state_file", "canary_key",
	"workers", "batch_keys", "max_request_bytes", "max_dirty_keys", "max_value_bytes", "enabled"}

func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// parseLocal fills the Local* fields and urlDB of d from s (zeroing them if s
// is invalid). Its errors never hold s, which may carry a password.
func parseLocal(s string, d *draft) error {
	d.LocalAddr, d.LocalUser, d.LocalPassword, d.LocalTLS, d.urlDB = "", "", "", false, -1
	d.LocalSentinel = Sentinel{}
	if strings.HasPrefix(s, SentinelScheme) {
		return parseLocalSentinel(s, d) // sentinel.go
	}
	const forms = "want redis://[user:password@]host:port/db, rediss://..., host:port or :port"
	if !strings.Contains(s, "://") {
		addr, err := hostPort(s, true)
		if err != nil {
			return fmt.Errorf("%v (%s)", err, forms)
		}
		d.LocalAddr = addr
		return nil
	}
	u, err := parseURL(s)
	if err != nil {
		return err
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme %q: %s", u.Scheme, forms)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("query, fragment or opaque part not supported: %s", forms)
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	addr, err := hostPort(net.JoinHostPort(u.Hostname(), port), true)
	if err != nil {
		return err
	}
	db := -1
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p[0] == '+' {
			return fmt.Errorf("db %q in the URL path is not a non-negative number", p)
		}
		db = n
	}
	d.LocalAddr, d.LocalTLS, d.urlDB = addr, u.Scheme == "rediss", db
	if u.User != nil {
		d.LocalUser = u.User.Username()
		d.LocalPassword, _ = u.User.Password()
	}
	return nil
}

// parseURL is url.Parse with an error that does not repeat the URL.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL: %v", err)
	}
	return u, nil
}

// hostPort checks "host:port"; an empty host becomes 127.0.0.1 when local.
func hostPort(s string, local bool) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" && local {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// parseRemote checks an https URL and returns a normalised form for comparing.
func parseRemote(s string) (string, error) {
	u, err := parseURL(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: must be an https:// URL", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", errors.New("no host in the URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("query or fragment not supported")
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	hp, err := hostPort(net.JoinHostPort(u.Hostname(), port), false)
	if err != nil {
		return "", err
	}
	return "https://" + strings.ToLower(hp) + strings.TrimRight(u.Path, "/"), nil
}

// checkFiles reads the certificates, keys and CAs of d (the hub's and the
// local Redis's) and checks them.
func (p *parser) checkFiles(d *draft) {
	read := func(key, path string) []byte {
		if path == "" {
			return nil
		}
		c, ok := p.files[path]
		if !ok {
			c.data, c.err = os.ReadFile(path)
			p.files[path] = c
		}
		if c.err != nil {
			p.fail(d.from[key], key, "%v", c.err)
		}
		return c.data
	}
	pair := func(certKey, keyKey, certPath, keyPath string) {
		cert, key := read(certKey, certPath), read(keyKey, keyPath)
		if cert != nil && key != nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				o, k := d.from[keyKey], keyKey // report it where the link itself says something
				if o.section != "link" && d.from[certKey].section == "link" {
					o, k = d.from[certKey], certKey
				}
				p.fail(o, k, "%s and %s do not load as a certificate and key pair: %v", certPath, keyPath, err)
			}
		}
	}
	ca := func(caKey, path string) {
		if data := read(caKey, path); data != nil {
			if err := checkCA(data); err != nil {
				p.fail(d.from[caKey], caKey, "%s: %v", path, err)
			}
		}
	}
	pair("cert", "key", d.Cert, d.Key)
	ca("ca", d.CA)
	pair("local_cert", "local_key", d.LocalCert, d.LocalKey)
	ca("local_ca", d.LocalCA)
}

func checkCA(data []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate in the file")
	}
	return nil
}

// crossCheck reports duplicate names and overlapping namespaces.
func (p *parser) crossCheck(ds []*draft) {
	for j, b := range ds {
		for _, a := range ds[:j] {
			if a.Name != "" && a.Name == b.Name {
				p.fail(b.from["name"], "name", "%q is already the name of the [[link]] at line %d",
					b.Name, p.lines.line("link", a.self.index, ""))
				break
			}
		}
		for _, a := range ds {
			if a != b && a.LocalAddr != "" && a.LocalAddr == b.LocalAddr && a.LocalDB == b.LocalDB &&
				a.Namespace != "" && strings.HasPrefix(b.CanaryKey, a.Namespace) {
				p.canaryInside(b, a)
			}
		}
		for _, a := range ds[:j] {
			if a.LocalAddr == "" || a.LocalAddr != b.LocalAddr || a.LocalDB != b.LocalDB ||
				a.remoteKey == "" || a.remoteKey != b.remoteKey || a.RemoteDB != b.RemoteDB ||
				a.Namespace == "" || b.Namespace == "" ||
				!strings.HasPrefix(a.Namespace, b.Namespace) && !strings.HasPrefix(b.Namespace, a.Namespace) {
				continue
			}
			p.fail(b.from["namespace"], "namespace", "%q overlaps namespace %q of link %q (line %d) with the same local and remote",
				b.Namespace, a.Namespace, a.Name, p.lines.line("link", a.self.index, ""))
		}
	}
}

// Typed accessors: each reports a wrong type and returns ok = false.

func (p *parser) table(o origin, key string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		p.fail(o, key, "must be a table, not %s", typeName(v))
	}
	return t, ok
}

func (p *parser) str(o origin, key string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.fail(o, key, "must be a string, not %s", typeName(v))
	}
	return s, ok
}

func (p *parser) oneOf(o origin, key string, v any, allowed ...string) (string, bool) {
	s, ok := p.str(o, key, v)
	if ok && !slices.Contains(allowed, s) {
		p.fail(o, key, "%q: must be one of %s", s, strings.Join(allowed, ", "))
		return s, false
	}
	return s, ok
}

func (p *parser) integer(o origin, key string, v any, lo, hi int64) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		p.fail(o, key, "must be an integer, not %s", typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		p.fail(o, key, "%d: must be from %d to %d", n, lo, hi)
		return n, false
	}
	return n, true
}

// intOr is the integer v, or old if v is not valid.
func (p *parser) intOr(o origin, key string, v any, lo, hi, old int64) int64 {
	if n, ok := p.integer(o, key, v, lo, hi); ok {
		return n
	}
	return old
}

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
