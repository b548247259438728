package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func clusterHead(seeds string) string {
	return strings.Replace(gwHead, `redis     = "redis://u:secret@127.0.0.1:6380/2"`, "redis_cluster = "+seeds, 1)
}

func TestGatewayClusterSeedsParse(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	g, err := ParseGateway(path, []byte(clusterHead(`["redis://gw:pw@127.0.0.1:7000", "redis://gw:pw@127.0.0.1:7001/0"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.RedisCluster, []string{"127.0.0.1:7000", "127.0.0.1:7001"}) || g.RedisUser != "gw" ||
		g.RedisPassword != "pw" || g.RedisDB != 0 || g.RedisAddr != "127.0.0.1:7000" {
		t.Errorf("parsed: seeds %q user %q db %d addr %q", g.RedisCluster, g.RedisUser, g.RedisDB, g.RedisAddr)
	}
	if strings.Contains(g.RedisRedacted(), "pw@") {
		t.Errorf("RedisRedacted shows the password: %s", g.RedisRedacted())
	}
	if g, err := ParseGateway(path, []byte(gwHead)); err != nil || g.RedisCluster != nil {
		t.Errorf("one Redis: %v %v", g.RedisCluster, err)
	}
}

func TestGatewayClusterSeedsErrors(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	for _, tc := range []struct{ name, text, want string }{
		{"both", gwHead + "redis_cluster = [\"127.0.0.1:7000\"]\n",
			"gateway.toml:7: gateway.redis_cluster: name the hub by redis or by redis_cluster, not both"},
		{"neither", strings.Replace(gwHead, `redis     = "redis://u:secret@127.0.0.1:6380/2"`+"\n", "", 1),
			"gateway.toml:1: gateway.redis: required (or redis_cluster"},
		{"empty", clusterHead("[]"), "gateway.toml:6: gateway.redis_cluster: must name at least one seed node"},
		{"not a list", clusterHead(`"127.0.0.1:7000"`), "gateway.toml:6: gateway.redis_cluster: must be an array of strings"},
		{"bad seed", clusterHead(`["127.0.0.1"]`), `gateway.toml:6: gateway.redis_cluster: seed "127.0.0.1":`},
		{"database", clusterHead(`["redis://127.0.0.1:7000/3"]`), "a cluster has database 0 only"},
		{"other users", clusterHead(`["redis://a:x@127.0.0.1:7000", "redis://b:x@127.0.0.1:7001"]`),
			"every seed must name the same user, password and scheme"},
	} {
		_, err := ParseGateway(path, []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %s", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") || err != nil && strings.Contains(err.Error(), ":x@") {
			t.Errorf("%s: the error shows a password: %v", tc.name, err)
		}
	}
}
