package main

import (
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// The one-link form takes the local Redis's TLS files as -lCA, -lcert and
// -lkey, validated as local_ca, local_cert and local_key in a file are.
func TestOneLinkLocalTLSFlags(t *testing.T) {
	dir := t.TempDir()
	certs, err := webdistest.GenerateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*oneLinkFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := addOneLinkFlags(fs)
		base := []string{"-raddr", "rediss://127.0.0.1:6380/2", "-haddr", "https://hub/redis",
			"-cert", certs.ClientCert, "-key", certs.ClientKey, "-CA", certs.CA, "-nam", "lab:"}
		return f, fs.Parse(append(base, args...))
	}
	f, err := parse("-lCA", certs.CA, "-lcert", certs.ClientCert, "-lkey", certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(filepath.Join(dir, "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Links[0]
	if !l.LocalTLS || l.LocalCA != certs.CA || l.LocalCert != certs.ClientCert || l.LocalKey != certs.ClientKey || l.LocalDB != 2 {
		t.Fatalf("link %+v", l)
	}
	// -lcert without -lkey, and -lCA with a plain redis:// address.
	f, _ = parse("-lcert", certs.ClientCert)
	if _, err := f.config("", false); err == nil || !strings.Contains(err.Error(), "local_cert: needs local_key") {
		t.Errorf("-lcert alone: %v", err)
	}
	f, _ = parse("-lCA", certs.CA, "-raddr", "127.0.0.1:6380")
	if _, err := f.config("", false); err == nil || !strings.Contains(err.Error(), "not a rediss:// URL") {
		t.Errorf("-lCA without rediss://: %v", err)
	}
}
