package gateway

import (
	"slices"
	"strings"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/dedup"
)

// A link proves that the stream of its namespace's events flows without
// writing into the namespace (docs/ARCHITECTURE.md, "Health"): it writes a
// canary key outside every namespace and subscribes to the key's channel on
// the same stream as the namespace's pattern. For each namespace ns of a
// tenant, its canary keys are dedup.HubCanaryPrefix(ns) + anything: the
// tenants of ns may write them, and subscribe to their keyspace channel.
//
// They are not a second namespace: an ACL selector allows only what the
// canary needs on them (SET, EXISTS, DEL), so that they cannot hold a
// tenant's data; the root of the user grants the channel, which carries no
// key.

// severalPatternsHeader tells a link, in the response to a PSUBSCRIBE,
// that the gateway takes several patterns per stream, so that it may put
// its canary's beside its namespace's: webdis.SeveralPatternsHeader (this
// package cannot import webdis: webdis's tests run the gateway; a test
// keeps them equal).
const severalPatternsHeader = "X-Redisrepl-Patterns"

// canaryCommands are what a tenant may run on its canary keys.
var canaryCommands = []string{"+set", "+exists", "+del"}

// canaryPrefixes are the prefixes of c's canary keys not already in one of
// its namespaces (a namespace "" holds every key: Redis refuses a channel
// pattern after "*").
func canaryPrefixes(c config.Tenant) []string {
	var out []string
	for _, ns := range c.Namespaces {
		p := dedup.HubCanaryPrefix(ns)
		if !slices.ContainsFunc(c.Namespaces, func(n string) bool { return strings.HasPrefix(p, n) }) {
			out = append(out, p)
		}
	}
	return out
}

// canarySelectors are the ACL SETUSER selectors of c's canary keys.
func canarySelectors(c config.Tenant) []any {
	var out []any
	for _, p := range canaryPrefixes(c) {
		sel := "(~" + globEscape(p) + "*"
		for _, cmd := range canaryCommands {
			sel += " " + cmd
		}
		out = append(out, sel+")")
	}
	return out
}

// canaryGrants are the keyspace channels of c's canary keys.
func canaryGrants(db int, c config.Tenant) []grant {
	ks := dedup.KeyspaceChannel(db)
	var gs []grant
	for _, p := range canaryPrefixes(c) {
		gs = append(gs, grant{lit: []byte(ks + p), pattern: ks + globEscape(p) + "*"})
	}
	return gs
}
