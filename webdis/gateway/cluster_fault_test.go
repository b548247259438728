package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

func webdisClient(t *testing.T, url, cert, key, ca string) *webdis.Client {
	c, err := webdis.New(webdis.Options{URL: url, CertFile: cert, KeyFile: key, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writers write keys on both sides until stopped, each key once more
// every round, and remember the last value acknowledged of each.
type writers struct {
	mu      sync.Mutex
	last    map[string]string // key -> last value acknowledged
	stop    chan struct{}
	wg      sync.WaitGroup
	written atomic.Int64
	failed  atomic.Int64 // writes refused or failed (retried next round)
}

func startWriters(t *testing.T, hub *webdistest.ClusterHub, cc *goredis.ClusterClient, keysPerSide int) *writers {
	w := &writers{last: map[string]string{}, stop: make(chan struct{})}
	local := hub.Local(t)
	set := func(k, v string, do func() error) {
		if err := do(); err != nil {
			w.failed.Add(1)
			return
		}
		w.mu.Lock()
		w.last[k] = v
		w.mu.Unlock()
		w.written.Add(1)
	}
	w.wg.Add(2)
	go func() { // the lab
		defer w.wg.Done()
		for round := 0; ; round++ {
			for i := range keysPerSide {
				select {
				case <-w.stop:
					return
				default:
				}
				k, v := fmt.Sprintf("lab1:l:%d", i), strconv.Itoa(round)
				set(k, v, func() error { _, err := local.Do("SET", k, v); return err })
				time.Sleep(time.Millisecond)
			}
		}
	}()
	go func() { // another lab's writes landing on the hub
		defer w.wg.Done()
		ctx := context.Background()
		for round := 0; ; round++ {
			for i := range keysPerSide {
				select {
				case <-w.stop:
					return
				default:
				}
				k, v := fmt.Sprintf("lab1:h:%d", i), strconv.Itoa(round)
				set(k, v, func() error { return cc.Set(ctx, k, v, 0).Err() })
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return w
}

func (w *writers) halt() {
	close(w.stop)
	w.wg.Wait()
}

// check counts the keys written that a side lacks (lost) or holds with
// another value than the last acknowledged.
func (w *writers) check(side map[string]webdistest.Key) (lost, stale int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, v := range w.last {
		got, ok := side[k]
		switch {
		case !ok:
			lost++
		case got.Contents != strconv.Quote(v):
			stale++
		}
	}
	return lost, stale
}

// TestClusterReshardDuringWrites moves many slots between masters with
// redis-cli --cluster reshard (MIGRATE: a del event on the source node)
// while both sides write, in direction both: no key is lost, none is
// deleted, and both sides are equal after.
func TestClusterReshardDuringWrites(t *testing.T) {
	hub := webdistest.NewClusterHub(t, webdistest.Options{Namespaces: []string{"lab1:"}})
	cc := clusterClient(t, hub)
	l := runLink(t, clusterLinkConfig(hub, "lab1:", "both"))
	w := startWriters(t, hub, cc, 500)
	time.Sleep(2 * time.Second)
	ms, err := hub.Cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	from, to := ms[0], ms[1]
	before := countKeys(t, hub, from.Addr, "lab1:")
	// The writers never delete: every del event of the namespace is a
	// key leaving its node (MIGRATE), which the link must not propagate.
	dels := countDels(t, hub, ms, "lab1:")
	start := time.Now()
	if err := hub.Cluster.Reshard(from.ID, to.ID, 2000); err != nil {
		t.Fatal(err)
	}
	if err := hub.Cluster.Reshard(to.ID, from.ID, 1000); err != nil {
		t.Fatal(err)
	}
	resharded := time.Since(start)
	time.Sleep(time.Second)
	w.halt()
	stopped := time.Now()
	// The reshard happened, keys of the namespace with it.
	after, err := hub.Cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	slots := map[string]int{}
	for _, m := range after {
		slots[m.ID] = m.Slots
	}
	if slots[from.ID] != from.Slots-1000 || slots[to.ID] != to.Slots+1000 {
		t.Fatalf("slots after the reshard: %v (before: %d and %d)", slots, from.Slots, to.Slots)
	}
	if n := countKeys(t, hub, from.Addr, "lab1:"); n >= before {
		t.Errorf("the source master holds %d keys of the namespace, %d before: no key migrated", n, before)
	}
	dump := hub.WaitEqual(t, "lab1:", 60*time.Second)
	converged := time.Since(stopped)
	remote, err := hub.Cluster.Dump("lab1:")
	if err != nil {
		t.Fatal(err)
	}
	lostL, staleL := w.check(dump)
	lostR, staleR := w.check(remote)
	if dels.Load() == 0 {
		t.Error("no del event of a migrating key was seen: the reshard moved none of the namespace's keys during the writes")
	}
	t.Logf("reshard of 2000 + 1000 slots in %v during writes: %d writes acknowledged (%d failed and retried), %d keys; "+
		"lost: %d local, %d hub; stale: %d local, %d hub; converged %v after the writes stopped; link resyncs %d; migration del events %d, hub events read by the link %d",
		resharded.Round(time.Millisecond), w.written.Load(), w.failed.Load(), len(w.last), lostL, lostR, staleL, staleR,
		converged.Round(time.Millisecond), l.Status().Resyncs, dels.Load(), l.Stats.EventsRemote.Load())
	if lostL+lostR+staleL+staleR != 0 {
		t.Errorf("keys lost or stale after the reshard: lost %d local %d hub, stale %d local %d hub", lostL, lostR, staleL, staleR)
	}
	if len(dump) != len(w.last) {
		t.Errorf("%d keys locally, %d written: a migration was taken for a delete, or a key came from nowhere", len(dump), len(w.last))
	}
}

// countDels counts the del events of keys under prefix on every master
// of ms until t ends.
func countDels(t *testing.T, hub *webdistest.ClusterHub, ms []webdistest.ClusterNode, prefix string) *atomic.Int64 {
	var n atomic.Int64
	for _, m := range ms {
		c := hub.Cluster.ConnT(t, m.Addr)
		psc := redis.PubSubConn{Conn: c}
		if err := psc.PSubscribe("__keyspace@0__:" + prefix + "*"); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				switch v := psc.Receive().(type) {
				case redis.Message:
					if string(v.Data) == "del" {
						n.Add(1)
					}
				case error:
					return
				}
			}
		}()
	}
	return &n
}

func countKeys(t *testing.T, hub *webdistest.ClusterHub, addr, prefix string) int {
	c := hub.Cluster.ConnT(t, addr)
	d, err := webdistest.Dump(c, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return len(d)
}

// TestClusterMasterKilled kills a master with kill -9 during writes in
// direction both; its replica is promoted. The gateway notices (the
// masters changed: the link's stream ends and it resyncs), and both sides
// converge. Writes the killed master acknowledged but did not pass to its
// replica are lost by Redis itself (asynchronous replication): those
// written on the lab come back from it.
func TestClusterMasterKilled(t *testing.T) {
	hub := webdistest.NewClusterHub(t, webdistest.Options{Namespaces: []string{"lab1:"}})
	cc := clusterClient(t, hub)
	l := runLink(t, clusterLinkConfig(hub, "lab1:", "both"))
	w := startWriters(t, hub, cc, 500)
	time.Sleep(2 * time.Second)
	ms, err := hub.Cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	resyncs := l.Status().Resyncs
	killed := time.Now()
	if err := hub.Cluster.Kill(ms[0].Addr); err != nil {
		t.Fatal(err)
	}
	webdistest.WaitFor(t, 30*time.Second, "the killed master's replica promoted", func() bool {
		now, err := hub.Cluster.Masters()
		return err == nil && len(now) == len(ms) && !slices.ContainsFunc(now, func(m webdistest.ClusterNode) bool { return m.Addr == ms[0].Addr })
	})
	if err := hub.Cluster.WaitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killed)
	now, err := hub.Cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range now {
		if m.Addr == ms[0].Addr {
			t.Fatalf("the killed master %s still serves slots", m.Addr)
		}
		// The promoted replica (every master, indeed) has the tenant's user.
		users, err := redis.Strings(hub.Cluster.ConnT(t, m.Addr).Do("ACL", "USERS"))
		if err != nil || !slices.Contains(users, "redisrepl-gw-test") {
			t.Errorf("master %s: ACL users %q (%v), want the tenant's", m.Addr, users, err)
		}
	}
	time.Sleep(2 * time.Second)
	w.halt()
	stopped := time.Now()
	dump := hub.WaitEqual(t, "lab1:", 60*time.Second)
	converged := time.Since(stopped)
	lostLab := 0
	w.mu.Lock()
	for k, v := range w.last {
		if got, ok := dump[k]; k[:7] == "lab1:l:" && (!ok || got.Contents != strconv.Quote(v)) {
			lostLab++
		}
	}
	w.mu.Unlock()
	lostHub, _ := w.check(dump)
	t.Logf("master %s killed: replica promoted in %v; %d writes acknowledged (%d failed and retried), %d keys; "+
		"lab keys lost %d; hub writes lost by the failover %d; converged %v after the writes stopped; link resyncs %d -> %d",
		ms[0].Addr, promoted.Round(time.Millisecond), w.written.Load(), w.failed.Load(), len(w.last), lostLab, lostHub,
		converged.Round(time.Millisecond), resyncs, l.Status().Resyncs)
	if lostLab != 0 {
		t.Errorf("%d keys written on the lab are missing or stale after the failover", lostLab)
	}
	if l.Status().Resyncs <= resyncs {
		t.Errorf("the link did not resync after the failover (resyncs %d -> %d): the topology change went unnoticed", resyncs, l.Status().Resyncs)
	}
}

// TestClusterTenantsIsolatedOnEveryNode: two tenants, each confined to its
// namespace on every node, a node added after the start included (its
// slots moved from the others): a tenant reads and writes its own keys in
// every slot, and is refused the other's.
func TestClusterTenantsIsolatedOnEveryNode(t *testing.T) {
	hub := webdistest.NewClusterHub(t, webdistest.Options{Namespaces: []string{"lab1:"},
		Tenants: []config.Tenant{{Name: "other", Client: "other lab", Namespaces: []string{"lab2:"}}}})
	cert, key := hub.ClientCert(t, "other lab")
	lab1 := webdisClient(t, hub.URL, hub.Cert, hub.Key, hub.CA)
	lab2 := webdisClient(t, hub.URL, cert, key, hub.CA)
	cc := clusterClient(t, hub)
	ctx := context.Background()
	const n = 300 // keys over every master's slots
	check := func(when string) {
		for i := range n {
			k1, k2 := fmt.Sprintf("lab1:k%d", i), fmt.Sprintf("lab2:k%d", i)
			if _, err := lab1.Do(ctx, []byte("SET"), []byte(k1), []byte(when)); err != nil {
				t.Fatalf("%s: tenant lab1 SET %s: %v", when, k1, err)
			}
			if _, err := lab2.Do(ctx, []byte("SET"), []byte(k2), []byte(when)); err != nil {
				t.Fatalf("%s: tenant other SET %s: %v", when, k2, err)
			}
			if _, err := lab1.Do(ctx, []byte("GET"), []byte(k2)); err == nil {
				t.Fatalf("%s: tenant lab1 read %s of the other tenant", when, k2)
			}
			if _, err := lab2.Do(ctx, []byte("SET"), []byte(k1), []byte("x")); err == nil {
				t.Fatalf("%s: tenant other wrote %s of lab1", when, k1)
			}
		}
		for i := range n {
			if v, _ := cc.Get(ctx, fmt.Sprintf("lab1:k%d", i)).Result(); v != when {
				t.Fatalf("%s: lab1:k%d is %q", when, i, v)
			}
		}
	}
	check("start")
	p, id, err := hub.Cluster.AddMaster()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := hub.Cluster.Masters()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID != id {
			if err := hub.Cluster.Reshard(m.ID, id, 500); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := hub.Cluster.WaitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The gateway noticed the node: the tenants' users are on it.
	nc := hub.Cluster.ConnT(t, p.Addr)
	webdistest.WaitFor(t, 10*time.Second, "both tenants' ACL users on the added node", func() bool {
		users, _ := redis.Strings(nc.Do("ACL", "USERS"))
		return slices.Contains(users, "redisrepl-gw-test") && slices.Contains(users, "redisrepl-gw-other")
	})
	if d, _ := webdistest.Dump(nc, "lab"); len(d) == 0 {
		t.Fatal("the added node holds none of the tenants' keys: the test would not test it")
	}
	check("after")
	if d, _ := webdistest.Dump(nc, "lab2:"); len(d) == 0 {
		t.Error("no key of the other tenant on the added node")
	}
}
