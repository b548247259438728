package main

import (
	"maps"
	"testing"

	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis/gateway"
)

// TestGatewayKnowsLinkScriptRoles: on a cluster hub the gateway splits the
// link's batch scripts per slot by their layout of KEYS and ARGV
// (webdis/gateway/cluster_route.go); each script of link/store.Scripts()
// (in its order: read, digest, scan, apply, cas apply, exists, stage,
// finish, chunk, hash chunk, string hash) must have the role that says
// how. A script changed in link/store changes its SHA1: update
// linkScriptRoles, and its splitting if its layout changed.
func TestGatewayKnowsLinkScriptRoles(t *testing.T) {
	roles := []string{"read", "digest", "", "apply", "cas-apply", "exists", "one-key", "one-key", "one-key", "one-key", "one-key"}
	scripts := store.Scripts()
	if len(scripts) != len(roles) {
		t.Fatalf("link/store.Scripts() has %d scripts, this test knows %d: give the new ones a role", len(scripts), len(roles))
	}
	want := map[string]string{}
	for i, s := range scripts {
		if roles[i] != "" { // the scan step: the gateway runs it itself
			want[s.SHA] = roles[i]
		}
	}
	if got := gateway.LinkScriptRoles(); !maps.Equal(got, want) {
		t.Errorf("the gateway's roles of the link scripts differ from link/store's scripts:\ngot  %v\nwant %v", got, want)
	}
}
