package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func localLink(local string) string {
	return fmt.Sprintf(`
[[link]]
name = "a"
local = %q
namespace = "n:"
remote = "https://hub/"
cert = "lab.pem"
key = "lab.key"
ca = "ca.pem"
`, local)
}

func TestLocalSentinelURL(t *testing.T) {
	_, path := setup(t)
	cfg, err := Parse(path, []byte(localLink("redis+sentinel://repl:p%40ss@10.0.0.1:26379,10.0.0.2:26380/labredis/3")))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Links[0]
	want := Sentinel{Addrs: "10.0.0.1:26379,10.0.0.2:26380", Master: "labredis"}
	if l.LocalSentinel != want || l.LocalUser != "repl" || l.LocalPassword != "p@ss" || l.LocalDB != 3 || l.LocalTLS {
		t.Errorf("got %s sentinel %+v", fields(l), l.LocalSentinel)
	}
	if l.LocalAddr != "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/labredis" {
		t.Errorf("LocalAddr %q: want the canonical form without credentials", l.LocalAddr)
	}
	if s := l.String(); strings.Contains(s, "p@ss") || strings.Contains(s, "p%40ss") {
		t.Errorf("the link's description shows the password: %s", s)
	}
	cfg, err = Parse(path, []byte(localLink("redis+sentinel://h:26379/m")))
	if err != nil || cfg.Links[0].LocalDB != 0 || cfg.Links[0].LocalSentinel.Master != "m" {
		t.Errorf("no db: %v %+v", err, cfg)
	}
}

func TestLocalSentinelErrors(t *testing.T) {
	_, path := setup(t)
	for _, tc := range []struct{ local, want string }{
		{"redis+sentinel:///m", `redisrepl.toml:4: link "a": local: names no Sentinel`},
		{"redis+sentinel://h:1", `local: the master's name must not be empty`},
		{"redis+sentinel://h:1,h:1/m", `local: Sentinel "h:1" is named twice`},
		{"redis+sentinel://h/m", `local: Sentinel "h" is not host:port`},
		{"redis+sentinel://:26379/m", `local: Sentinel ":26379" has no host`},
		{"redis+sentinel://h:1/m/x", `local: db "x" in the URL path is not a non-negative number`},
		{"redis+sentinel://h:1/m?x=1", `local: query or fragment not supported`},
	} {
		_, err := Parse(path, []byte(localLink(tc.local)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.local, err, tc.want)
		}
	}
}

const gwSentinelHead = `[gateway]
listen    = "127.0.0.1:8443"
cert      = "lab.pem"
key       = "lab.key"
client_ca = "ca.pem"
`

func TestGatewaySentinelParse(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	g, err := ParseGateway(path, []byte(gwSentinelHead+`redis_sentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]
redis_master = "hub"
redis = "redis://gw:secret@hub/2"
`))
	if err != nil {
		t.Fatal(err)
	}
	if g.Sentinel != (Sentinel{Addrs: "127.0.0.1:26379,127.0.0.1:26380", Master: "hub"}) || g.RedisUser != "gw" ||
		g.RedisPassword != "secret" || g.RedisDB != 2 {
		t.Errorf("parsed: %+v", g)
	}
	if r := g.RedisRedacted(); r != "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/hub" {
		t.Errorf("RedisRedacted: %q", r)
	}
	if g, err := ParseGateway(path, []byte(gwSentinelHead+"redis_sentinels = [\"h:1\"]\nredis_master = \"hub\"\n")); err != nil || !g.Sentinel.Set() {
		t.Errorf("without redis: %v", err)
	}
}

func TestGatewaySentinelErrors(t *testing.T) {
	dir, _ := setup(t)
	path := filepath.Join(dir, "gateway.toml")
	for _, tc := range []struct{ name, text, want string }{
		{"no hub", gwSentinelHead, `gateway.toml:1: gateway.redis: required (or redis_cluster, for a Redis Cluster hub, or redis_sentinels and redis_master`},
		{"no master", gwSentinelHead + "redis_sentinels = [\"h:1\"]\n", `gateway.toml:6: gateway.redis_sentinels: needs redis_master`},
		{"no sentinels", gwSentinelHead + "redis_master = \"hub\"\n", `gateway.toml:6: gateway.redis_master: needs redis_sentinels`},
		{"empty list", gwSentinelHead + "redis_sentinels = []\nredis_master = \"hub\"\n", `gateway.toml:6: gateway.redis_sentinels: names no Sentinel`},
		{"bad address", gwSentinelHead + "redis_sentinels = [\"h\"]\nredis_master = \"hub\"\n", `gateway.toml:6: gateway.redis_sentinels: Sentinel "h" is not host:port`},
		{"twice", gwSentinelHead + "redis_sentinels = [\"h:1\", \"h:1\"]\nredis_master = \"hub\"\n", `gateway.toml:6: gateway.redis_sentinels: Sentinel "h:1" is named twice`},
		{"not strings", gwSentinelHead + "redis_sentinels = \"h:1\"\nredis_master = \"hub\"\n", `gateway.toml:6: gateway.redis_sentinels: must be an array of strings`},
		{"bad master", gwSentinelHead + "redis_sentinels = [\"h:1\"]\nredis_master = \"a b\"\n", `gateway.toml:7: gateway.redis_master: master name "a b"`},
	} {
		_, err := ParseGateway(path, []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}
