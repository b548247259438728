package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link"
)

// oneLinkFlags are the original command line's flags (-raddr -haddr -cert
// -key -CA -nam), which the service and verify both accept instead of a
// configuration file.
type oneLinkFlags struct {
	raddr, haddr, cert, key, ca, nam *string
	state                            *string // the sync state file; "" = derived (stateFileFor)
	// The local Redis over TLS (-raddr rediss://...): local_ca, local_cert
	// and local_key.
	lca, lcert, lkey *string
}

func addOneLinkFlags(fs *flag.FlagSet) *oneLinkFlags {
	return &oneLinkFlags{
		raddr: fs.String("raddr", "", "one-link form: local Redis `address` (host:port, :port or redis://host:port/db)"),
		haddr: fs.String("haddr", "", "one-link form: remote Webdis `URL` (https://host/path)"),
		cert:  fs.String("cert", "", "one-link form: client certificate `file` (PEM)"),
		key:   fs.String("key", "", "one-link form: client key `file` (PEM)"),
		ca:    fs.String("CA", "", "one-link form: CA `file` that signed the proxy's certificate (PEM)"),
		nam:   fs.String("nam", "", "one-link form: `namespace` (key prefix) to replicate"),
		state: fs.String("state", "", "one-link form: sync state `file` (default: in $STATE_DIRECTORY or /var/lib/redisrepl, named after -nam and both servers)"),
		lca:   fs.String("lCA", "", "one-link form, with -raddr rediss://...: CA `file` that signed the local Redis's certificate (PEM; default: the system's CAs)"),
		lcert: fs.String("lcert", "", "one-link form, with -raddr rediss://...: client certificate `file` presented to the local Redis (PEM; with -lkey)"),
		lkey:  fs.String("lkey", "", "one-link form, with -raddr rediss://...: key `file` of -lcert (PEM)"),
	}
}

// given says whether any of the flags was given.
func (f *oneLinkFlags) given() bool {
	return *f.raddr != "" || *f.haddr != "" || *f.cert != "" || *f.key != "" || *f.ca != "" || *f.nam != "" || *f.state != "" ||
		*f.lca != "" || *f.lcert != "" || *f.lkey != ""
}

// config is the configuration the flags describe (with rc: direction both)
// or, when none was given, the file at path.
func (f *oneLinkFlags) config(path string, rc bool) (*config.Config, error) {
	if !f.given() && !rc {
		return config.Load(path)
	}
	missing := ""
	for _, fl := range []struct{ name, v string }{{"-raddr", *f.raddr}, {"-haddr", *f.haddr}, {"-cert", *f.cert}, {"-key", *f.key}, {"-CA", *f.ca}, {"-nam", *f.nam}} {
		if fl.v == "" {
			missing += " " + fl.name
		}
	}
	if missing != "" {
		return nil, fmt.Errorf("the one-link form needs every one of -raddr -haddr -cert -key -CA -nam; missing:%s", missing)
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	direction := "push"
	if rc {
		direction = "both"
	}
	link := map[string]any{
		"name": linkName(*f.nam), "local": *f.raddr, "remote": *f.haddr, "namespace": *f.nam,
		"cert": abs(*f.cert), "key": abs(*f.key), "ca": abs(*f.ca), "direction": direction,
		"state_file": stateFileFor(*f.raddr, *f.haddr, *f.nam),
	}
	if *f.state != "" {
		link["state_file"] = abs(*f.state)
	}
	for k, v := range map[string]string{"local_ca": *f.lca, "local_cert": *f.lcert, "local_key": *f.lkey} {
		if v != "" {
			link[k] = abs(v)
		}
	}
	// Validated exactly as a file would be.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"link": []any{link}}); err != nil {
		return nil, fmt.Errorf("flags: %v", err)
	}
	return config.Parse("command line", buf.Bytes())
}

// stateFileFor is the one-link form's sync state file: named after the
// namespace and a digest of both servers and the namespace, so that two
// processes on one machine with the same -nam (one lab linked to two hubs,
// two local Redis servers with the same prefix) keep states of their own.
func stateFileFor(raddr, haddr, namespace string) string {
	sum := sha256.Sum256([]byte(raddr + "\x00" + haddr + "\x00" + namespace))
	return filepath.Join(link.StateDir(), linkName(namespace)+"-"+hex.EncodeToString(sum[:6])+".state")
}

// linkName makes a link name (letters, digits, '.', '_', '-') of a namespace.
func linkName(namespace string) string {
	b := []byte(namespace)
	for i, c := range b {
		if !(c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 || b[0] == '.' {
		return "link"
	}
	return string(b)
}
