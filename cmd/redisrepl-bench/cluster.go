package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// Cluster: the link through the gateway to one hub Redis and to a Redis
// Cluster of 3 masters (no replicas, as the single hub), side by side in one run,
// interleaved round after round (both gateways in this process):
//
//	cluster_burst20k  the link's burst of 20,000 keys: the cluster's keys/s,
//	                  the single Redis's (single=) and their ratio; the
//	                  target is ≥ 0.8×: splitting batches per slot must not
//	                  collapse them to a key per request
//	cluster_lag       one key written locally until it reads on the hub
//	                  (p50, p99 in ms), for both hubs
//
// On this 2-core machine the cluster's three redis-servers share the cores
// with the link, the gateway and the local Redis: it cannot be faster here.

const (
	clusterTargetBurst   = 0.8
	clusterBenchReplicas = 0
)

// clusterSide is one hub of the scenario.
type clusterSide struct {
	name      string
	link      config.Link
	localAddr string
	// remote counts and empties the hub's keys, and reads one.
	count func() (int, error)
	flush func() error
	get   func(key string) (bool, error)
}

func runCluster(ctx context.Context, b *bench) error {
	single, err := b.startHub(ctx, webdistest.Options{Front: webdistest.FrontGateway, Namespaces: []string{"burst:", "lag:"}})
	if err != nil {
		return err
	}
	defer b.closeHub(single)
	// No replicas: the single hub has none either, and on two cores a
	// replica's copy of every write would be measured as the cluster's cost.
	ch, err := webdistest.StartClusterHub(webdistest.Options{Namespaces: []string{"burst:", "lag:"}}, clusterBenchReplicas)
	if err != nil {
		return err
	}
	defer ch.Close()
	remote, err := single.Remote()
	if err != nil {
		return err
	}
	defer remote.Close()
	masters, err := masterConns(ch)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range masters {
			c.Close()
		}
	}()
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: ch.Cluster.Seeds(), Protocol: 2})
	defer cc.Close()
	sides := []*clusterSide{
		{name: "single", localAddr: single.LocalAddr, link: linkConfig(single, "burst:"),
			count: func() (int, error) { return dbsize(remote) },
			flush: func() error { return flush(remote) },
			get:   func(k string) (bool, error) { return redis.Bool(remote.Do("EXISTS", k)) }},
		{name: "cluster", localAddr: ch.LocalAddr, link: config.Link{Name: "bench", Local: ch.LocalAddr, LocalAddr: ch.LocalAddr, Namespace: "burst:",
			Remote: ch.URL, Cert: ch.Cert, Key: ch.Key, CA: ch.CA}.WithDefaults(),
			count: func() (int, error) { return sumDo(masters, "DBSIZE") },
			flush: func() error { _, err := sumDo(masters, "FLUSHALL"); return err },
			get:   func(k string) (bool, error) { n, err := cc.Exists(ctx, k).Result(); return n == 1, err }},
	}
	n := 20_000
	if b.quick {
		n = 5_000
	}
	s := series{}
	for round := range b.rounds {
		for _, sd := range sides {
			kps, err := clusterBurst(ctx, b, sd, n)
			if err != nil {
				return fmt.Errorf("%s burst: %w", sd.name, err)
			}
			s.add(sd.name+"/burst", kps)
			progress("round %d %s burst%s: %.0f keys/s", round+1, sd.name, kn(n), kps)
			lags, err := clusterLag(ctx, b, sd, 30)
			if err != nil {
				return fmt.Errorf("%s lag: %w", sd.name, err)
			}
			s.add(sd.name+"/lag_p50", percentile(lags, 0.5))
			s.add(sd.name+"/lag_p99", percentile(lags, 0.99))
		}
	}
	c, w := s.med("cluster/burst"), s.med("single/burst")
	b.emit("cluster_burst"+kn(n), append(s.headline("keys_per_s", "cluster/burst"), "single", w, "ratio", ratio(c/w),
		"target", fmt.Sprintf(">=%gx", clusterTargetBurst), "pass", yesNo(c/w >= clusterTargetBurst), "masters", 3, "replicas", 3*clusterBenchReplicas, "rounds", b.rounds)...)
	b.emit("cluster_lag", "p50_ms", s.med("cluster/lag_p50"), "p99_ms", s.med("cluster/lag_p99"),
		"single_p50_ms", s.med("single/lag_p50"), "single_p99_ms", s.med("single/lag_p99"), "rounds", b.rounds)
	return nil
}

// masterConns are connections to the cluster's masters, kept open: the
// burst polls their key counts every 5 ms.
func masterConns(ch *webdistest.ClusterHub) ([]redis.Conn, error) {
	ms, err := ch.Cluster.Masters()
	if err != nil {
		return nil, err
	}
	var out []redis.Conn
	for _, m := range ms {
		c, err := ch.Cluster.Conn(m.Addr)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// sumDo runs cmd on every connection and sums the integer replies.
func sumDo(conns []redis.Conn, cmd string) (int, error) {
	total := 0
	for _, c := range conns {
		v, err := c.Do(cmd)
		if err != nil {
			return 0, err
		}
		if n, ok := v.(int64); ok {
			total += int(n)
		}
	}
	return total, nil
}

// clusterBurst writes n keys locally with a link running and returns the
// keys/s until all of them are on the hub.
func clusterBurst(ctx context.Context, b *bench, sd *clusterSide, n int) (float64, error) {
	local, err := redis.Dial("tcp", sd.localAddr)
	if err != nil {
		return 0, err
	}
	defer local.Close()
	if err := flush(local); err != nil {
		return 0, err
	}
	if err := sd.flush(); err != nil {
		return 0, err
	}
	l, err := b.startLink(ctx, sd.link, true)
	if err != nil {
		return 0, err
	}
	defer l.stop()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- waitUntil(ctx, 20*time.Second+time.Duration(n)*time.Second/1000, 5*time.Millisecond, func() bool {
			c, err := sd.count()
			return err == nil && c >= n
		})
	}()
	if err := pipelineSet(ctx, local, n, func(i int) []byte { return numKey("burst:", i) }, func(int) []byte { return value100 }); err != nil {
		return 0, err
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// clusterLag writes keys one at a time locally and times each until the
// hub holds it (ms, sorted).
func clusterLag(ctx context.Context, b *bench, sd *clusterSide, keys int) ([]float64, error) {
	local, err := redis.Dial("tcp", sd.localAddr)
	if err != nil {
		return nil, err
	}
	defer local.Close()
	cfg := sd.link
	cfg.Namespace, cfg.Name = "lag:", "bench-lag"
	l, err := b.startLink(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	var out []float64
	for i := range keys {
		k := fmt.Sprintf("lag:%d:%d", time.Now().UnixNano(), i)
		start := time.Now()
		if _, err := local.Do("SET", k, "v"); err != nil {
			return nil, err
		}
		if err := waitUntil(ctx, 10*time.Second, time.Millisecond, func() bool { ok, _ := sd.get(k); return ok }); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(out)
	return out, nil
}
