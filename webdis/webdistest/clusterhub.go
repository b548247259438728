package webdistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/pki"
)

// ClusterHub is a local redis-server and a hub made of a Redis Cluster
// (3 masters, and replicas: 3 for tests) behind the gateway
// (redis_cluster), on loopback.
type ClusterHub struct {
	Dir       string
	LocalAddr string
	URL       string // https://127.0.0.1:PORT/redis
	CA        string
	Cert, Key string // the default tenant's client certificate
	Certs     *Certs
	Cluster   *Cluster
	Gateway   *gateway.Gateway

	local    *Process
	tenantCA *pki.CA
	clientCA string
}

// ClientCert writes a client certificate and key for name (a tenant's
// client) signed by a CA the gateway trusts, and returns their files.
func (h *ClusterHub) ClientCert(t testing.TB, name string) (cert, key string) {
	t.Helper()
	certPEM, keyPEM, err := h.tenantCA.IssueClient(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(h.Dir, "certs", name+".pem"), filepath.Join(h.Dir, "certs", name+".key")
	if err := pki.WriteFiles(cert, certPEM, key, keyPEM, true); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// NewClusterHub starts a ClusterHub for t (StartClusterHub), stopped when
// t ends; opts gives the gateway's tenants as for FrontGateway
// (Namespaces, Read, Tenants) and its log (Log, default t.Logf).
func NewClusterHub(t testing.TB, opts Options) *ClusterHub {
	t.Helper()
	RequireCluster(t)
	if opts.Log == nil {
		opts.Log = t.Logf
	}
	h, err := StartClusterHub(opts, 1)
	if h != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range append([]*Process{h.local}, h.clusterNodes()...) {
					if p != nil {
						t.Logf("%s", p.Tail(8))
					}
				}
			}
			h.Close()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// StartClusterHub starts a local redis-server, a cluster of 3 masters with
// replicas replicas each, and the gateway in front of it, in a temporary
// directory; on error, what was started is stopped.
func StartClusterHub(opts Options, replicas int) (*ClusterHub, error) {
	dir, err := os.MkdirTemp("", "webdistest-cluster-")
	if err != nil {
		return nil, err
	}
	h := &ClusterHub{Dir: dir}
	if err := h.start(opts, replicas); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func (h *ClusterHub) start(opts Options, replicas int) error {
	c, err := GenerateCerts(filepath.Join(h.Dir, "certs"))
	if err != nil {
		return err
	}
	h.Certs, h.CA, h.Cert, h.Key = c, c.CA, c.ClientCert, c.ClientKey
	// Every client certificate of another tenant comes from a CA of the
	// hub's own (GenerateCerts keeps no CA key), which the gateway trusts.
	if h.tenantCA, err = pki.NewCA("redisrepl test tenants CA", 0); err != nil {
		return err
	}
	bundle, err := os.ReadFile(c.CA)
	if err != nil {
		return err
	}
	h.clientCA = filepath.Join(h.Dir, "certs", "clients-ca.pem")
	if err := os.WriteFile(h.clientCA, append(bundle, h.tenantCA.CertPEM...), 0o644); err != nil {
		return err
	}
	if h.local, err = onFreePort(func(port int) (*Process, error) { return StartRedis(h.Dir, port) }); err != nil {
		return err
	}
	h.LocalAddr = h.local.Addr
	start := time.Now()
	if h.Cluster, err = StartCluster(h.Dir, 3, replicas); err != nil {
		return err
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	logf("webdistest: cluster of 3 masters and %d replicas up in %v: %v", 3*replicas, time.Since(start).Round(time.Millisecond), h.Cluster.Seeds())
	port, err := FreePort()
	if err != nil {
		return err
	}
	cfg, err := GatewayConfig(c, fmt.Sprintf("127.0.0.1:%d", port), h.Cluster.Seeds()[0], opts)
	if err != nil {
		return err
	}
	cfg.ClientCA = h.clientCA
	cfg.RedisCluster = h.Cluster.Seeds()
	cfg.Redis = strings.Join(cfg.RedisCluster, ",")
	g, err := gateway.New(cfg, zerolog.New(quietWriter{logWriter{logf}}).Level(zerolog.InfoLevel))
	if err != nil {
		return err
	}
	if err := g.Start(context.Background()); err != nil {
		return err
	}
	h.Gateway = g
	h.URL = fmt.Sprintf("https://127.0.0.1:%d/redis", port)
	return nil
}

// Close stops the gateway and every process by pid, and removes Dir.
func (h *ClusterHub) Close() error {
	var errs []error
	if h.Gateway != nil {
		errs = append(errs, h.Gateway.Close())
	}
	if h.Cluster != nil {
		errs = append(errs, h.Cluster.Close())
	}
	if h.local != nil {
		errs = append(errs, h.local.Stop())
	}
	errs = append(errs, os.RemoveAll(h.Dir))
	return errors.Join(errs...)
}

func (h *ClusterHub) clusterNodes() []*Process {
	if h.Cluster == nil {
		return nil
	}
	return h.Cluster.Nodes
}

// Local is a connection to the local Redis, closed when t ends.
func (h *ClusterHub) Local(t testing.TB) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", h.LocalAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitEqual waits until the local namespace prefix and the cluster's hold
// the same keys, byte for byte, expiry times within 1.5 s; it fails t with
// the differences after d, and returns the local dump.
func (h *ClusterHub) WaitEqual(t testing.TB, prefix string, d time.Duration) map[string]Key {
	t.Helper()
	local := h.Local(t)
	deadline := time.Now().Add(d)
	for {
		l, err := Dump(local, prefix)
		if err != nil {
			t.Fatal(err)
		}
		r, err := h.Cluster.Dump(prefix)
		if err == nil {
			diff := Diff(l, r, 1500)
			if len(diff) == 0 {
				return l
			}
			if time.Now().After(deadline) {
				if len(diff) > 20 {
					diff = append(diff[:20], fmt.Sprintf("... %d more", len(diff)-20))
				}
				t.Fatalf("local and cluster differ after %v (%d local keys, %d cluster keys):\n%s", d, len(l), len(r), strings.Join(diff, "\n"))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("cannot read the cluster: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// quietWriter passes the gateway's log lines on but its access log: a
// cluster test sees the topology's changes (info) without every request
// or refusal.
type quietWriter struct{ w logWriter }

func (q quietWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), `"message":"request"`) || strings.Contains(string(p), `"message":"refused"`) {
		return len(p), nil
	}
	return q.w.Write(p)
}
