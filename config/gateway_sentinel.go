package config

import "strings"

// A hub managed by Sentinel (sentinel.go): [gateway] names its Sentinels
// and the master's name, and `redis`, optional then, gives only the
// user, password, database and TLS of the master and its replicas:
//
//	redis_sentinels = ["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"]
//	redis_master    = "hub"
//	redis           = "redis://redisrepl-gateway:secret@hub/0"

// sentinelField reads a [gateway] field of a Sentinel-managed hub into g;
// known = false if k is not one.
func sentinelField(fail func(string, ...any), k string, v any, g *Gateway) (known bool) {
	switch k {
	case "redis_sentinels":
		if ss, ok := gwStrings(fail, v); ok {
			if err := checkSentinelAddrs(ss); err != nil {
				fail("%v", err)
			}
			g.Sentinel.Addrs = strings.Join(ss, ",")
		}
	case "redis_master":
		if s, ok := gwStr(fail, v); ok {
			if err := checkMasterName(s); err != nil {
				fail("%v", err)
			}
			g.Sentinel.Master = s
		}
	default:
		return false
	}
	return true
}
