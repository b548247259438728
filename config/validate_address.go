package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The addresses of both files: the local Redis and the hub's Redis as
// redis[s]:// URLs or host:port, the remote as an https:// URL.

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
