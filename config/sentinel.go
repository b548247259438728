package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// A Redis managed by Sentinel is named by its Sentinels' addresses and the
// name they monitor it under; whoever dials it asks a Sentinel for the
// master's address at dial time (docs/ARCHITECTURE.md, "Past one Redis").
// The gateway's hub writes them as two [gateway] fields
// (gateway_sentinel.go), a link's local side as one URL:
//
//	redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]
//
// The user and password are the master's (and its replicas'); Sentinels are
// reached without a password.

// SentinelScheme starts a local URL of a Sentinel-managed Redis.
const SentinelScheme = "redis+sentinel://"

// Sentinel names a Sentinel-managed Redis. It is comparable (a Link is
// compared whole), hence the addresses joined in one string.
type Sentinel struct {
	Addrs  string // the Sentinels, host:port each, joined by ","
	Master string // the name they monitor the master under
}

// NewSentinel is the Sentinel of the addresses addrs and master.
func NewSentinel(addrs []string, master string) Sentinel {
	return Sentinel{Addrs: strings.Join(addrs, ","), Master: master}
}

// Set says whether a Sentinel-managed Redis is named.
func (s Sentinel) Set() bool { return s.Addrs != "" }

// List is the Sentinels' addresses.
func (s Sentinel) List() []string {
	if s.Addrs == "" {
		return nil
	}
	return strings.Split(s.Addrs, ",")
}

// String is the canonical redis+sentinel:// form, without credentials: it
// stands for the Redis wherever an address would (logs, identities).
func (s Sentinel) String() string { return SentinelScheme + s.Addrs + "/" + s.Master }

// checkSentinelAddrs checks a list of Sentinel addresses: at least one,
// each host:port with a host, none twice.
func checkSentinelAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("names no Sentinel: give at least one host:port")
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		hp, err := hostPort(a, false)
		if err != nil {
			return fmt.Errorf("Sentinel %v", err)
		}
		if strings.HasPrefix(hp, ":") {
			return fmt.Errorf("Sentinel %q has no host", a)
		}
		if seen[hp] {
			return fmt.Errorf("Sentinel %q is named twice", a)
		}
		seen[hp] = true
	}
	return nil
}

// checkMasterName checks the name Sentinel monitors a master under.
func checkMasterName(s string) error {
	if s == "" {
		return errors.New("the master's name must not be empty")
	}
	if strings.ContainsAny(s, " \t\r\n/,") {
		return fmt.Errorf("master name %q: no spaces, '/' or ','", s)
	}
	return nil
}

// parseLocalSentinel fills the Local* fields and urlDB of d from a
// redis+sentinel:// URL.
func parseLocalSentinel(s string, d *draft) error {
	const form = "want " + SentinelScheme + "[user:password@]host:port[,host:port...]/master[/db]"
	rest := strings.TrimPrefix(s, SentinelScheme)
	if strings.ContainsAny(rest, "?#") {
		return fmt.Errorf("query or fragment not supported: %s", form)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		ui, err := url.Parse("redis://" + hosts[:at+1] + "x")
		if err != nil || ui.User == nil {
			return fmt.Errorf("user and password are not URL-encoded: %s", form)
		}
		d.LocalUser = ui.User.Username()
		d.LocalPassword, _ = ui.User.Password()
		hosts = hosts[at+1:]
	}
	addrs := strings.Split(hosts, ",")
	if hosts == "" {
		addrs = nil
	}
	if err := checkSentinelAddrs(addrs); err != nil {
		return fmt.Errorf("%v (%s)", err, form)
	}
	master, db, hasDB := strings.Cut(path, "/")
	if err := checkMasterName(master); err != nil {
		return fmt.Errorf("%v (%s)", err, form)
	}
	if hasDB && db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || db[0] == '+' {
			return fmt.Errorf("db %q in the URL path is not a non-negative number", db)
		}
		d.urlDB = n
	}
	d.LocalSentinel = NewSentinel(addrs, master)
	d.LocalAddr = d.LocalSentinel.String()
	return nil
}
