package link

import (
	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// StoreOptions are the store.Options of link cfg (its defaults applied by
// the caller: config.Link.WithDefaults), on a pool of conns connections to
// the local Redis and a Webdis client of as many: the one place a link's
// configuration becomes what link/store opens, for the link and for
// redisrepl verify.
func StoreOptions(cfg config.Link, conns int) store.Options {
	return store.Options{
		Name:      cfg.Name,
		Namespace: []byte(cfg.Namespace),
		Local: store.RedisAddr{Addr: cfg.LocalAddr, DB: cfg.LocalDB, User: cfg.LocalUser, Password: cfg.LocalPassword, TLS: cfg.LocalTLS,
			CAFile: cfg.LocalCA, CertFile: cfg.LocalCert, KeyFile: cfg.LocalKey,
			Sentinel: store.Sentinel{Addrs: cfg.LocalSentinel.List(), Master: cfg.LocalSentinel.Master}},
		Hub:             hubOptions(cfg, conns),
		Conns:           conns,
		MaxRequestBytes: cfg.MaxRequestBytes,
	}
}

// hubOptions are the options of a Webdis client to cfg's hub, of at most
// conns connections of requests.
func hubOptions(cfg config.Link, conns int) webdis.Options {
	return webdis.Options{URL: cfg.Remote, CertFile: cfg.Cert, KeyFile: cfg.Key, CAFile: cfg.CA, MaxConns: conns}
}
