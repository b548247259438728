package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePKI writes into dir a CA (ca.pem), client certificates with their keys
// (one per name: NAME.pem and NAME.key), a key of nobody (other.key) and a CA
// file holding no certificate (empty-ca.pem).
func writePKI(t *testing.T, dir string, names ...string) {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	for i, name := range names {
		k := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
		writeKey(t, filepath.Join(dir, name+".key"), k)
	}
	writeKey(t, filepath.Join(dir, "other.key"), newKey(t))
	writeFile(t, filepath.Join(dir, "empty-ca.pem"), "no certificate here\n")
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKey(t *testing.T, path string, k *ecdsa.PrivateKey) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setup makes a directory with certificates lab.pem/lab.key, ca.pem and
// friends, and returns the path a config file in it would have.
func setup(t *testing.T) (dir, path string) {
	dir = t.TempDir()
	writePKI(t, dir, "lab", "labB")
	return dir, filepath.Join(dir, "redisrepl.toml")
}

func mustParse(t *testing.T, path, text string) *Config {
	t.Helper()
	cfg, err := Parse(path, []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

const full = `# a full file
[service]
metrics_addr = "127.0.0.1:9121"
log_level    = "debug"

[defaults]
cert      = "lab.pem"
key       = "lab.key"
ca        = "ca.pem"
direction = "both"
workers   = 4
resync_interval = "10m"

[[link]]
name      = "labA"
local     = "redis://127.0.0.1:6379/0"
namespace = "labA:"
remote    = "https://hub.example.org/redis"

[[link]]
name      = "labB"   # overrides
local     = "rediss://repl:s3cret@10.0.0.2:6380/3"
namespace = "labB:"
remote    = "https://hub.example.org:8443/"
remote_db = 2
direction = "push"
conflict  = "remote"
on_local_reset = "restore"
cert      = "labB.pem"
key       = "labB.key"
workers   = 16
batch_keys = 100
max_request_bytes = 65536
max_dirty_keys = 5000
max_value_bytes = 1048576
state_file = "state/labB.json"
resync_interval = 0

[[link]]
name = "labC"
local = ":6390"
db = 7
namespace = "labA:"          # same namespace as labA, but another local Redis
remote = "https://hub.example.org/redis"
`

func TestParseFull(t *testing.T) {
	dir, path := setup(t)
	cfg := mustParse(t, path, full)
	if cfg.Path != path || cfg.Service != (Service{MetricsAddr: "127.0.0.1:9121", LogLevel: "debug"}) {
		t.Errorf("path %q service %+v", cfg.Path, cfg.Service)
	}
	if len(cfg.Links) != 3 {
		t.Fatalf("%d links", len(cfg.Links))
	}
	a, b, c := cfg.Links[0], cfg.Links[1], cfg.Links[2]
	wantA := Link{
		Name: "labA", Local: "redis://127.0.0.1:6379/0", LocalAddr: "127.0.0.1:6379",
		Namespace: "labA:", Remote: "https://hub.example.org/redis",
		Cert: filepath.Join(dir, "lab.pem"), Key: filepath.Join(dir, "lab.key"), CA: filepath.Join(dir, "ca.pem"),
		Direction: "both", Conflict: "local", OnLocalReset: "keep", ResyncInterval: Duration{10 * time.Minute},
		CanaryKey: "redisrepl:canary:labA", Workers: 4, BatchKeys: 256, MaxRequestBytes: 900 * 1024, MaxDirtyKeys: 1_000_000, MaxValueBytes: 512 << 20,
	}
	if a != wantA {
		t.Errorf("labA:\n got %#v\nwant %#v", fields(a), fields(wantA))
	}
	wantB := Link{
		Name: "labB", Local: "rediss://repl:s3cret@10.0.0.2:6380/3", LocalAddr: "10.0.0.2:6380", LocalDB: 3,
		LocalUser: "repl", LocalPassword: "s3cret", LocalTLS: true,
		Namespace: "labB:", Remote: "https://hub.example.org:8443/", RemoteDB: 2,
		Cert: filepath.Join(dir, "labB.pem"), Key: filepath.Join(dir, "labB.key"), CA: filepath.Join(dir, "ca.pem"),
		Direction: "push", Conflict: "remote", OnLocalReset: "restore", StateFile: filepath.Join(dir, "state/labB.json"),
		CanaryKey: "redisrepl:canary:labB", Workers: 16, BatchKeys: 100, MaxRequestBytes: 65536, MaxDirtyKeys: 5000, MaxValueBytes: 1 << 20,
	}
	if b != wantB {
		t.Errorf("labB:\n got %#v\nwant %#v", fields(b), fields(wantB))
	}
	if c.LocalAddr != "127.0.0.1:6390" || c.LocalDB != 7 || c.Direction != "both" || c.Workers != 4 {
		t.Errorf("labC: %#v", fields(c))
	}
}

// fields prints a Link field by field (its own %#v hides the password).
func fields(l Link) string {
	type plain Link
	return fmt.Sprintf("%+v", plain(l))
}

func TestLocalForms(t *testing.T) {
	_, path := setup(t)
	for _, tc := range []struct {
		local, addr, user, pass string
		db                      int
		tls                     bool
	}{
		{"redis://:pw@h:1/3", "h:1", "", "pw", 3, false},
		{"redis://u:p%40ss@h:2", "h:2", "u", "p@ss", 0, false},
		{"rediss://h:6380/0", "h:6380", "", "", 0, true},
		{"redis://h", "h:6379", "", "", 0, false},
		{"redis://:6380/", "127.0.0.1:6380", "", "", 0, false},
		{"redis://[::1]:7000/15", "[::1]:7000", "", "", 15, false},
		{"redis://h:1/16", "h:1", "", "", 16, false},
		{"localhost:6379", "localhost:6379", "", "", 0, false},
		{":6379", "127.0.0.1:6379", "", "", 0, false},
	} {
		cfg, err := Parse(path, []byte(fmt.Sprintf(`
[[link]]
name = "a"
local = %q
namespace = "n:"
remote = "https://hub/"
cert = "lab.pem"
key = "lab.key"
ca = "ca.pem"
`, tc.local)))
		if err != nil {
			t.Errorf("%s: %v", tc.local, err)
			continue
		}
		l := cfg.Links[0]
		if l.LocalAddr != tc.addr || l.LocalUser != tc.user || l.LocalPassword != tc.pass || l.LocalDB != tc.db || l.LocalTLS != tc.tls {
			t.Errorf("%s: got %s", tc.local, fields(l))
		}
	}
}

const minimal = `[defaults]
cert = "lab.pem"
key = "lab.key"
ca = "ca.pem"

[[link]]
name = "a"
local = "redis://:hunter2@127.0.0.1:6379/0"
namespace = "a:"
remote = "https://user:webdispw@hub/redis"
`

func TestPasswordNotPrinted(t *testing.T) {
	_, path := setup(t)
	cfg := mustParse(t, path, minimal)
	l := cfg.Links[0]
	if l.LocalPassword != "hunter2" {
		t.Fatalf("password %q", l.LocalPassword)
	}
	for _, s := range []string{l.String(), fmt.Sprint(l), fmt.Sprintf("%v %+v %#v %s", l, l, l, l),
		fmt.Sprintf("%v %+v", cfg, cfg), fmt.Sprintf("%v %+v", *cfg, *cfg), fmt.Sprint(cfg.Links)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "webdispw") {
			t.Errorf("password printed: %s", s)
		}
	}
	if s := l.String(); !strings.Contains(s, "redis://:xxxxx@127.0.0.1:6379/0") || !strings.Contains(s, `"a:"`) {
		t.Errorf("String() = %s", s)
	}
	// Nor in errors about the URL.
	_, err := Parse(path, []byte(strings.Replace(minimal, "6379/0", "99999/0", 1)))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "local:") {
		t.Errorf("error %v", err)
	}
	_, err = Parse(path, []byte(strings.Replace(minimal, "6379/0", "6379/x", 1)))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}

// TestErrors checks each problem is reported with the file, the line of the
// line marked "# <-" (or none if no line is marked) and the field.
func TestErrors(t *testing.T) {
	dir, path := setup(t)
	const certs = "cert = \"lab.pem\"\nkey = \"lab.key\"\nca = \"ca.pem\"\n"
	const link = "[[link]]\nname = \"a\"\nlocal = \":6379\"\nnamespace = \"a:\"\nremote = \"https://hub/\"\n"
	const tlsLink = "[[link]]\nname = \"a\"\nlocal = \"rediss://h:6379/0\"\nnamespace = \"a:\"\nremote = \"https://hub/\"\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"syntax", "[[link]]\nname = \"a # <-\nlocal = 1\n", ": "},
		{"syntax2", "[service]\nlog_level = info # <-\n", ": "},
		{"unknown in link", link + certs + "namspace = \"x\" # <-\n", `: link "a": unknown field "namspace"`},
		{"unknown in service", "[service]\nlog_levl = \"info\" # <-\n" + link + certs, `: service: unknown field "log_levl"`},
		{"unknown in defaults", "[defaults]\n" + certs + "nope = 1 # <-\n" + link, `: defaults: unknown field "nope"`},
		{"unknown table", "[servce] # <-\nx = 1\n" + link + certs, `: unknown field "servce"`},
		{"unknown top", "verbose = true # <-\n" + link + certs, `: unknown field "verbose"`},
		{"unknown subtable", link + certs + "[link.tls] # <-\nx = 1\n", `: link "a": unknown field "tls"`},
		{"link not array", "[link] # <-\nname = \"a\"\n", `: link: must be written as [[link]] tables`},
		{"missing namespace", "[[link]] # <-\nname = \"a\"\nlocal = \":1\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": namespace: required`},
		{"missing name", "[[link]] # <-\nlocal = \":1\"\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link #1: name: required`},
		{"missing ca after defaults", "[defaults]\ncert = \"lab.pem\"\nkey = \"lab.key\"\n" + link + "ca = \"ca.pem\"\n[[link]] # <-\nname = \"b\"\nlocal = \":1\"\nnamespace = \"b:\"\nremote = \"https://h/\"\n",
			`: link "b": ca: required`},
		{"duplicate name", link + certs + "[[link]]\nname = \"a\" # <-\nlocal = \":1\"\nnamespace = \"b:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": name: "a" is already the name of the [[link]] at line 1`},
		{"bad name", "[[link]]\nname = \"a b\" # <-\nlocal = \":1\"\nnamespace = \"b:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a b": name: "a b": use 1 to 64 letters`},
		{"direction", link + certs + "direction = \"pull\" # <-\n", `: link "a": direction: "pull": must be one of push, both`},
		{"direction in defaults", "[defaults]\ndirection = \"rc\" # <-\n" + link + certs, `: defaults.direction: "rc": must be one of push, both`},
		{"conflict", link + certs + "conflict = \"newest\" # <-\n", `: link "a": conflict: "newest": must be one of local, remote`},
		{"log_level", "[service]\nlog_level = \"trace\" # <-\n" + link + certs, `: service.log_level: "trace": must be one of debug`},
		{"metrics_addr", "[service]\nmetrics_addr = \"9121\" # <-\n" + link + certs, `: service.metrics_addr: "9121" is not host:port`},
		{"duration", link + certs + "resync_interval = \"10 minutes\" # <-\n", `: link "a": resync_interval: "10 minutes" is not a duration`},
		{"duration small", link + certs + "resync_interval = \"10ms\" # <-\n", `: link "a": resync_interval: 10ms: must be 0 (off) or at least 1s`},
		{"duration negative", link + certs + "resync_interval = \"-1m\" # <-\n", `: link "a": resync_interval: -1m: must be 0`},
		{"duration int", link + certs + "resync_interval = 60 # <-\n", `: link "a": resync_interval: must be a string, not an integer`},
		{"local scheme", "[[link]]\nname = \"a\"\nlocal = \"http://h:1/0\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: scheme "http": want redis://`},
		{"local port", "[[link]]\nname = \"a\"\nlocal = \"h:99999\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: port "99999" is not a number from 1 to 65535`},
		{"local url port", "[[link]]\nname = \"a\"\nlocal = \"redis://h:0/1\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: port "0" is not a number`},
		{"local no port", "[[link]]\nname = \"a\"\nlocal = \"localhost\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: "localhost" is not host:port`},
		{"local db", "[[link]]\nname = \"a\"\nlocal = \"redis://h:1/one\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: db "one" in the URL path is not a non-negative number`},
		{"local db negative", "[[link]]\nname = \"a\"\nlocal = \"redis://h:1/-1\" # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": local: db "-1"`},
		{"db field conflicts", "[[link]]\nname = \"a\"\nlocal = \"redis://h:1/1\"\ndb = 2 # <-\nnamespace = \"a:\"\nremote = \"https://h/\"\n" + certs,
			`: link "a": db: db 1 in the local URL conflicts with db = 2`},
		{"db negative", link + certs + "db = -1 # <-\n", `: link "a": db: -1: must be from 0`},
		{"remote http", "[[link]]\nname = \"a\"\nlocal = \":1\"\nnamespace = \"a:\"\nremote = \"http://h/\" # <-\n" + certs,
			`: link "a": remote: scheme "http": must be an https:// URL`},
		{"remote unparsable", "[[link]]\nname = \"a\"\nlocal = \":1\"\nnamespace = \"a:\"\nremote = \"https://[::1\" # <-\n" + certs,
			`: link "a": remote: invalid URL`},
		{"remote no host", "[[link]]\nname = \"a\"\nlocal = \":1\"\nnamespace = \"a:\"\nremote = \"https:///redis\" # <-\n" + certs,
			`: link "a": remote: no host`},
		{"empty namespace", "[[link]]\nname = \"a\"\nlocal = \":1\"\nnamespace = \"\" # <-\nremote = \"https://h/\"\n" + certs,
			`: link "a": namespace: must not be empty`},
		{"workers 0", link + certs + "workers = 0 # <-\n", `: link "a": workers: 0: must be from 1 to 256`},
		{"workers 300", link + certs + "workers = 300 # <-\n", `: link "a": workers: 300: must be from 1 to 256`},
		{"workers string", link + certs + "workers = \"8\" # <-\n", `: link "a": workers: must be an integer, not a string`},
		{"batch_keys", link + certs + "batch_keys = 20000 # <-\n", `: link "a": batch_keys: 20000: must be from 1 to 10000`},
		{"max_request_bytes", link + certs + "max_request_bytes = 1000 # <-\n", `: link "a": max_request_bytes: 1000: must be from 65536`},
		{"max_dirty_keys", link + certs + "max_dirty_keys = 0 # <-\n", `: link "a": max_dirty_keys: 0: must be from 1`},
		{"max_value_bytes", link + certs + "max_value_bytes = 1.5 # <-\n", `: link "a": max_value_bytes: must be an integer, not a float`},
		{"remote_db", link + certs + "remote_db = -3 # <-\n", `: link "a": remote_db: -3: must be from 0`},
		{"missing cert", link + "cert = \"nope.pem\" # <-\nkey = \"lab.key\"\nca = \"ca.pem\"\n",
			`: link "a": cert: open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`},
		{"missing key in defaults", "[defaults]\ncert = \"lab.pem\"\nkey = \"/nonexistent/k.key\" # <-\nca = \"ca.pem\"\n" + link,
			`: defaults.key: open /nonexistent/k.key: no such file or directory`},
		{"unreadable ca", link + "cert = \"lab.pem\"\nkey = \"lab.key\"\nca = \".\" # <-\n", `: link "a": ca: read ` + dir + `: is a directory`},
		{"not a pair", link + "cert = \"lab.pem\"\nkey = \"other.key\" # <-\nca = \"ca.pem\"\n",
			`: link "a": key: ` + filepath.Join(dir, "lab.pem") + ` and ` + filepath.Join(dir, "other.key") + ` do not load as a certificate and key pair`},
		{"key as cert", "[defaults]\nkey = \"lab.key\"\n" + link + "cert = \"lab.key\" # <-\nca = \"ca.pem\"\n",
			`: link "a": cert: ` + filepath.Join(dir, "lab.key") + ` and`},
		{"ca without certificates", link + "cert = \"lab.pem\"\nkey = \"lab.key\"\nca = \"empty-ca.pem\" # <-\n",
			`: link "a": ca: ` + filepath.Join(dir, "empty-ca.pem") + `: no PEM certificate in the file`},
		{"overlap", "[defaults]\n" + certs + "[[link]]\nname = \"a\"\nlocal = \"redis://127.0.0.1:6379/0\"\nnamespace = \"lab\"\nremote = \"https://Hub:443/redis/\"\n" +
			"[[link]]\nname = \"b\"\nlocal = \":6379\"\nnamespace = \"lab:x:\" # <-\nremote = \"https://hub/redis\"\n",
			`: link "b": namespace: "lab:x:" overlaps namespace "lab" of link "a" (line 5) with the same local and remote`},
		{"no links", "[service]\nlog_level = \"info\"\n", `: no [[link]] entries`},
		{"local_ca without rediss", link + certs + "local_ca = \"ca.pem\" # <-\n",
			`: link "a": local_ca: a TLS setting of the local Redis, but local is not a rediss:// URL`},
		{"local_cert without rediss in defaults", "[defaults]\nlocal_cert = \"lab.pem\" # <-\nlocal_key = \"lab.key\"\n" + link + certs,
			`: defaults.local_cert: a TLS setting of the local Redis, but local is not a rediss:// URL`},
		{"local_cert without local_key", tlsLink + certs + "local_cert = \"lab.pem\" # <-\n",
			`: link "a": local_cert: needs local_key`},
		{"local_key without local_cert", tlsLink + certs + "local_key = \"lab.key\" # <-\n",
			`: link "a": local_key: needs local_cert`},
		{"missing local_ca", tlsLink + certs + "local_ca = \"nope.pem\" # <-\n",
			`: link "a": local_ca: open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`},
		{"local_ca without certificates", tlsLink + certs + "local_ca = \"empty-ca.pem\" # <-\n",
			`: link "a": local_ca: ` + filepath.Join(dir, "empty-ca.pem") + `: no PEM certificate in the file`},
		{"local not a pair", tlsLink + certs + "local_cert = \"lab.pem\"\nlocal_key = \"other.key\" # <-\n",
			`: link "a": local_key: ` + filepath.Join(dir, "lab.pem") + ` and ` + filepath.Join(dir, "other.key") + ` do not load as a certificate and key pair`},
		{"local_ca empty", tlsLink + certs + "local_ca = \"\" # <-\n", `: link "a": local_ca: must not be empty`},
		{"canary_key in the namespace", link + certs + "canary_key = \"a:canary\" # <-\n",
			`: link "a": canary_key: "a:canary" lies in its own namespace "a:": the canary key must be outside every replicated namespace`},
		{"canary_key empty", link + certs + "canary_key = \"\" # <-\n", `: link "a": canary_key: must not be empty`},
		{"default canary_key in another link's namespace", "[defaults]\n" + certs +
			"[[link]]\nname = \"a\"\nlocal = \":6379\"\nnamespace = \"redisrepl:\"\nremote = \"https://hub/redis\"\ncanary_key = \"canary:a\"\n" +
			"[[link]]\nname = \"b\" # <-\nlocal = \"127.0.0.1:6379\"\nnamespace = \"b:\"\nremote = \"https://hub/redis\"\n",
			`: link "b": canary_key: "redisrepl:canary:b" lies in the namespace of link "a" (line 5) on the same local Redis "redisrepl:"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(path, []byte(tc.text))
			if err == nil {
				t.Fatalf("no error; links %v", cfg.Links)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			want := path + tc.want
			if n := markedLine(tc.text); n > 0 {
				want = fmt.Sprintf("%s:%d%s", path, n, tc.want)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to start with:\n%s", err, want)
			}
		})
	}
}

func markedLine(text string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.HasSuffix(l, "# <-") {
			return i + 1
		}
	}
	return 0
}

func TestErrorList(t *testing.T) {
	_, path := setup(t)
	text := `[defaults]
direction = "sideways"
cert = "lab.pem"
key = "lab.key"
ca = "ca.pem"

[[link]]
name = "a"
local = ":1"
namespace = "a:"
remote = "http://hub/"
workers = 0

[[link]]
local = ":2"
remote = "https://hub/"
namspace = "b:"
`
	_, err := Parse(path, []byte(text))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("%T %v", err, err)
	}
	want := []string{
		path + `:2: defaults.direction: "sideways": must be one of push, both`, // once, not once per link
		path + `:11: link "a": remote: scheme "http": must be an https:// URL`,
		path + `:12: link "a": workers: 0: must be from 1 to 256`,
		path + `:14: link #2: name: required (in the [[link]] or in [defaults])`,
		path + `:14: link #2: namespace: required (in the [[link]] or in [defaults])`,
		path + `:17: link #2: unknown field "namspace"`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 2 || one.Field != "defaults.direction" {
		t.Errorf("errors.As *Error: %+v", one)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 3, Link: "a", Index: 1, Field: "cert", Msg: "m"}, `f.toml:3: link "a": cert: m`},
		{Error{File: "f.toml", Index: 2, Field: "name", Msg: "m"}, `f.toml: link #2: name: m`},
		{Error{Line: 4, Msg: "m"}, `line 4: m`},
		{Error{Msg: "m"}, `m`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir, path := setup(t)
	if _, err := Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	writeFile(t, path, minimal)
	cfg, err := Load(path)
	if err != nil || len(cfg.Links) != 1 || cfg.Links[0].CA != filepath.Join(dir, "ca.pem") {
		t.Fatalf("%v %v", cfg, err)
	}
}

func TestFingerprint(t *testing.T) {
	dir, path := setup(t)
	fp := func(text string) string {
		t.Helper()
		return mustParse(t, path, text).Links[0].Fingerprint()
	}
	base := fp(minimal)
	if again := fp(minimal); again != base {
		t.Errorf("fingerprint not stable: %s %s", base, again)
	}
	// A comment, an explicit default or an order change does not matter.
	if same := fp("# comment\n" + minimal + "workers = 8\ndirection = \"push\"\n"); same != base {
		t.Error("fingerprint changed without a change of settings")
	}
	for _, change := range []string{
		`namespace = "a:"|namespace = "b:"`,
		`hunter2|hunter3`,
		`6379/0|6379/1`,
		`name = "a"|name = "b"`,
		`hub/redis|hub/redis2`,
		"lab.pem\"\nkey = \"lab.key|labB.pem\"\nkey = \"labB.key",
	} {
		old, new, _ := strings.Cut(change, "|")
		if fp(strings.Replace(minimal, old, new, 1)) == base {
			t.Errorf("fingerprint did not change with %s", change)
		}
	}
	for _, extra := range []string{"remote_db = 1", "direction = \"both\"", "conflict = \"remote\"", `resync_interval = "1m"`,
		`state_file = "s"`, "workers = 9", "batch_keys = 9", "max_request_bytes = 70000", "max_dirty_keys = 9", "max_value_bytes = 9"} {
		if fp(minimal+extra+"\n") == base {
			t.Errorf("fingerprint did not change with %s", extra)
		}
	}
	// The content of a certificate file counts, not only its path.
	writePKI(t, dir, "lab")
	if fp(minimal) == base {
		t.Error("fingerprint did not change with the certificate files' contents")
	}
}

// A TLS local Redis: local_ca, local_cert and local_key resolved against
// the file's directory, inherited from [defaults], and part of the
// fingerprint, contents included.
func TestLocalTLS(t *testing.T) {
	dir, path := setup(t)
	const text = `[defaults]
cert = "lab.pem"
key = "lab.key"
ca = "ca.pem"
local_ca = "ca.pem"

[[link]]
name = "a"
local = "rediss://127.0.0.1:6380/0"
namespace = "a:"
remote = "https://hub/redis"
local_cert = "labB.pem"
local_key = "labB.key"

[[link]]
name = "b"
local = "rediss://127.0.0.1:6381/0"
namespace = "b:"
remote = "https://hub/redis"
`
	cfg := mustParse(t, path, text)
	a, b := cfg.Links[0], cfg.Links[1]
	if !a.LocalTLS || a.LocalCA != filepath.Join(dir, "ca.pem") || a.LocalCert != filepath.Join(dir, "labB.pem") || a.LocalKey != filepath.Join(dir, "labB.key") {
		t.Errorf("link a: %s", fields(a))
	}
	if b.LocalCA != filepath.Join(dir, "ca.pem") || b.LocalCert != "" || b.LocalKey != "" {
		t.Errorf("link b: %s", fields(b))
	}
	fp := func(text string) string { return mustParse(t, path, text).Links[1].Fingerprint() }
	base := fp(text)
	if fp(strings.Replace(text, `local_ca = "ca.pem"`, "", 1)) == base {
		t.Error("fingerprint did not change without local_ca")
	}
	if fp(text+"local_cert = \"lab.pem\"\nlocal_key = \"lab.key\"\n") == base {
		t.Error("fingerprint did not change with local_cert and local_key")
	}
	// A new local CA file under the same name: a new fingerprint.
	other := t.TempDir()
	writePKI(t, other)
	withLocal := strings.Replace(text, `local_ca = "ca.pem"`, `local_ca = "local-ca.pem"`, 1)
	copyFile(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "local-ca.pem"))
	before := fp(withLocal)
	copyFile(t, filepath.Join(other, "ca.pem"), filepath.Join(dir, "local-ca.pem"))
	if fp(withLocal) == before {
		t.Error("fingerprint did not change with the local CA file's contents")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

func TestExamples(t *testing.T) {
	dir := t.TempDir()
	writePKI(t, dir, "lab", "labB", "labC", "labC-redis")
	copyFile(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "redis-ca.pem"))
	for _, name := range []string{"redisrepl.toml", "single-link.toml"} {
		data, err := os.ReadFile(filepath.Join("..", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/etc/redisrepl/", dir+"/")
		cfg, err := Parse(filepath.Join(dir, name), []byte(text))
		if err != nil {
			t.Errorf("%s:\n%v", name, err)
			continue
		}
		for _, l := range cfg.Links {
			t.Logf("%s: %v", name, l)
		}
	}
}
