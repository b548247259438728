package webdistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// SentinelSet is a Redis managed by Sentinel, on free loopback ports: a
// master, one replica and three redis-sentinel processes (quorum 2), each
// stopped by its pid.
type SentinelSet struct {
	Dir       string
	Name      string     // the name the Sentinels monitor the master under
	Servers   []*Process // the master at the start, then its replica
	Sentinels []*Process
}

// failoverTimeout bounds a failover (SENTINEL FAILOVER until every
// Sentinel names the new master and the old one replicates from it).
const failoverTimeout = 30 * time.Second

// NewSentinelSet starts a SentinelSet named name for t (skipped without
// redis-sentinel, failed with CI=true) and stops it at t's end.
func NewSentinelSet(t testing.TB, name string) *SentinelSet {
	t.Helper()
	Require(t)
	RequireProgram(t, "redis-sentinel", "redis-sentinel")
	dir, err := os.MkdirTemp("", "sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSentinelSet(dir, name)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return s
}

// StartSentinelSet starts the master, its replica and three Sentinels in
// dir and waits until the replica is in sync and every Sentinel knows it
// and the other Sentinels (so that a failover can start at once).
func StartSentinelSet(dir, name string) (s *SentinelSet, err error) {
	s = &SentinelSet{Dir: dir, Name: name}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	master, err := onFreePort(func(port int) (*Process, error) { return StartRedis(dir, port) })
	if err != nil {
		return s, err
	}
	s.Servers = append(s.Servers, master)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	replica, err := onFreePort(func(port int) (*Process, error) {
		return StartRedis(dir, port, "--replicaof", mhost, mport)
	})
	if err != nil {
		return s, err
	}
	s.Servers = append(s.Servers, replica)
	for range 3 {
		p, err := onFreePort(func(port int) (*Process, error) { return startSentinel(dir, port, name, master.Addr) })
		if err != nil {
			return s, err
		}
		s.Sentinels = append(s.Sentinels, p)
	}
	return s, s.waitReady(master.Addr)
}

func startSentinel(dir string, port int, name, master string) (*Process, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := filepath.Join(dir, fmt.Sprintf("sentinel-%d", port))
	host, mport, _ := net.SplitHostPort(master)
	// Sentinel rewrites its file (what it learns): it must be its own.
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, dir, base+".log", name, host, mport, name, name, name)
	if err := os.WriteFile(base+".conf", []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := StartProcess("redis-sentinel", addr, base+".log", base+".out", syscall.SIGKILL, "redis-sentinel", base+".conf")
	if err != nil {
		return nil, err
	}
	if err := p.waitFor("PING reply", func() error { return pingRedis(addr) }); err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

// waitReady waits until every Sentinel names master, knows a replica that
// is up and the two other Sentinels.
func (s *SentinelSet) waitReady(master string) error {
	deadline := time.Now().Add(failoverTimeout)
	for {
		err := s.ready(master)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webdistest: the Sentinels of %q are not ready within %v: %w", s.Name, failoverTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *SentinelSet) ready(master string) error {
	for _, p := range s.Sentinels {
		c, err := dial(p.Addr)
		if err != nil {
			return err
		}
		err = func() error {
			defer c.Close()
			addr, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name))
			if err != nil || len(addr) != 2 || net.JoinHostPort(addr[0], addr[1]) != master {
				return fmt.Errorf("sentinel %s names %q (%v), want %s", p.Addr, addr, err, master)
			}
			reps, err := redis.Values(c.Do("SENTINEL", "REPLICAS", s.Name))
			if err != nil {
				return err
			}
			up := 0
			for _, r := range reps {
				m, _ := redis.StringMap(r, nil)
				if !strings.Contains(m["flags"], "down") && !strings.Contains(m["flags"], "disconnected") &&
					m["master-link-status"] == "ok" {
					up++
				}
			}
			if up == 0 {
				return fmt.Errorf("sentinel %s knows no replica in sync", p.Addr)
			}
			others, err := redis.Values(c.Do("SENTINEL", "SENTINELS", s.Name))
			if err != nil || len(others) < len(s.Sentinels)-1 {
				return fmt.Errorf("sentinel %s knows %d other Sentinels (%v)", p.Addr, len(others), err)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	for _, p := range s.Servers {
		if p.Addr == master {
			continue
		}
		if err := replicaInSync(p.Addr); err != nil {
			return err
		}
	}
	return nil
}

func replicaInSync(addr string) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := redis.String(c.Do("INFO", "replication"))
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("%s is not a replica in sync", addr)
	}
	return nil
}

// Addrs are the Sentinels' addresses.
func (s *SentinelSet) Addrs() []string {
	var out []string
	for _, p := range s.Sentinels {
		out = append(out, p.Addr)
	}
	return out
}

// Master is the address the first Sentinel names master.
func (s *SentinelSet) Master() (string, error) {
	c, err := dial(s.Sentinels[0].Addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	addr, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name))
	if err != nil || len(addr) != 2 {
		return "", fmt.Errorf("webdistest: SENTINEL GET-MASTER-ADDR-BY-NAME %s: %q %v", s.Name, addr, err)
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// Failover runs SENTINEL FAILOVER and returns the new master's address
// as soon as the Sentinel asked names it and it answers ROLE master (the
// other Sentinels, and the old master turning replica, follow: Settle).
func (s *SentinelSet) Failover() (string, error) {
	old, err := s.Master()
	if err != nil {
		return "", err
	}
	c, err := dial(s.Sentinels[0].Addr)
	if err != nil {
		return "", err
	}
	_, err = c.Do("SENTINEL", "FAILOVER", s.Name)
	c.Close()
	if err != nil {
		return "", fmt.Errorf("webdistest: SENTINEL FAILOVER %s: %w", s.Name, err)
	}
	deadline := time.Now().Add(failoverTimeout)
	for {
		if now, err := s.Master(); err == nil && now != old && isMaster(now) {
			return now, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("webdistest: the failover of %q did not end within %v (master still %s)", s.Name, failoverTimeout, old)
		}
		time.Sleep(pollEvery)
	}
}

func isMaster(addr string) bool {
	c, err := dial(addr)
	if err != nil {
		return false
	}
	defer c.Close()
	role, err := redis.Values(c.Do("ROLE"))
	if err != nil || len(role) == 0 {
		return false
	}
	r, _ := role[0].([]byte)
	return string(r) == "master"
}

// Settle waits until every Sentinel names master, and the other server
// replicates from it, in sync.
func (s *SentinelSet) Settle(master string) error { return s.waitReady(master) }

// Server is the Redis process at addr.
func (s *SentinelSet) Server(addr string) *Process {
	for _, p := range s.Servers {
		if p.Addr == addr {
			return p
		}
	}
	return nil
}

// Close stops the Sentinels, then the servers.
func (s *SentinelSet) Close() error {
	var errs []error
	for _, p := range append(append([]*Process{}, s.Sentinels...), s.Servers...) {
		if err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SentinelURL is the redis+sentinel:// local URL of the set, database db.
func (s *SentinelSet) SentinelURL(db int) string {
	return "redis+sentinel://" + strings.Join(s.Addrs(), ",") + "/" + s.Name + "/" + strconv.Itoa(db)
}
