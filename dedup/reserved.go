package dedup

import "strconv"

// Reserved names (docs/ARCHITECTURE.md, "Reserved names"): every key,
// channel and mark a link uses for its own purposes, and the keyspace
// channels it builds, come from here. They live in this package, the
// lowest one, so that config, link/store, link, the gateway and the test
// servers all take them from one place.

const (
	// StagingMark follows a namespace in the name of a staging key: the
	// temporary key a big value is built in before it is renamed into
	// place, and the names of write marks. Links never replicate, compare
	// nor count such keys.
	StagingMark = "\x00redisrepl-staging\x00"
	// WriteMarkTag follows the namespace and StagingMark in a write mark
	// (link/store: WriteMark), a channel the link publishes to after its
	// writes to drop their echoes (link/echoes.go).
	WriteMarkTag = "written:"
	// LegacyCanaryTag follows the namespace and StagingMark in the canary
	// key older links wrote in the namespace (link/store: LegacyCanaryKey).
	LegacyCanaryTag = "canary"
	// KeepaliveMark follows the namespace in the channel a link publishes
	// to on an idle hub stream (link/subscribe.go): a channel of the
	// namespace's pattern naming no key.
	KeepaliveMark = "\x00redisrepl-keepalive"
	// CanaryPrefix starts the canary keys, outside every namespace: a
	// link's local one is CanaryPrefix + its name unless set
	// (config.Link.CanaryKey), the hub's HubCanaryPrefix.
	CanaryPrefix = "redisrepl:canary:"
)

// HubCanaryPrefix is where, behind the gateway, the hub's canary keys of
// the links of namespace ns live (webdis/gateway/canary.go): outside every
// namespace, and the tenants of ns may write them. A link's is this and its
// name.
func HubCanaryPrefix(ns string) string { return CanaryPrefix + ns }

// KeyspaceChannel is the start of the keyspace channels of database db,
// "__keyspace@<db>__:", which the key's name follows.
func KeyspaceChannel(db int) string { return "__keyspace@" + strconv.Itoa(db) + "__:" }
