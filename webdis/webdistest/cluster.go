package webdistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Cluster is a Redis Cluster on loopback: redis-server processes with
// --cluster-enabled yes on free ports (each with its bus port, +10000,
// free too), joined with redis-cli --cluster create.
type Cluster struct {
	Dir   string
	Nodes []*Process // in start order; a killed node stays, stopped
}

// clusterNodeTimeout is cluster-node-timeout (ms): a killed master's
// replica is promoted a few seconds after it.
const clusterNodeTimeout = 2000

// RequireCluster skips t (or fails it when CI=true) if redis-server or
// redis-cli is not installed.
func RequireCluster(t testing.TB) {
	t.Helper()
	var missing []string
	for _, b := range []string{"redis-server", "redis-cli"} {
		if _, err := FindBinary(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("webdistest: %s not installed; install with: apt-get install -y redis-server redis-tools", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// StartCluster starts masters masters with replicas replicas each in dir,
// creates the cluster and waits until every node says cluster_state:ok.
func StartCluster(dir string, masters, replicas int) (c *Cluster, err error) {
	c = &Cluster{Dir: dir}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	for range masters * (1 + replicas) {
		if _, err := c.startNode(); err != nil {
			return c, err
		}
	}
	args := []string{"redis-cli", "--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if err := c.cli(args...); err != nil {
		return c, err
	}
	return c, c.WaitOK(30 * time.Second)
}

// startNode starts one empty cluster node.
func (c *Cluster) startNode() (*Process, error) {
	var last error
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		if port+10000 > 65535 || !portFree(port+10000) {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		base := filepath.Join(c.Dir, fmt.Sprintf("cluster-%d", port))
		p, err := StartProcess("redis-server", addr, base+".log", base+".out", syscall.SIGKILL,
			"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", c.Dir, "--daemonize", "no", "--logfile", base+".log",
			"--cluster-enabled", "yes", "--cluster-config-file", base+".nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout), "--repl-diskless-sync-delay", "0")
		if err != nil {
			last = err
			continue
		}
		if err := p.waitFor("PING reply", func() error { return pingRedis(addr) }); err != nil {
			last = p.fail(err)
			continue
		}
		c.Nodes = append(c.Nodes, p)
		return p, nil
	}
	return nil, last
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// cli runs redis-cli with args (argv[0] included) and returns its output
// in the error when it fails.
func (c *Cluster) cli(argv ...string) error {
	bin, err := FindBinary(argv[0])
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("webdistest: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// Seeds are the addresses of the running nodes.
func (c *Cluster) Seeds() []string {
	var out []string
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n.Addr)
		}
	}
	return out
}

// WaitOK waits until every running node says cluster_state:ok and agrees
// on which nodes serve slots, and every replica is in sync.
func (c *Cluster) WaitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.checkOK(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webdistest: the cluster is not ok within %v: %v", timeout, last)
}

func (c *Cluster) checkOK() error {
	var first []string
	for i, addr := range c.Seeds() {
		info, err := c.do(addr, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(string(info.([]byte)), "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", addr)
		}
		// A replica that has not synced yet cannot be promoted.
		repl, err := redis.String(c.do(addr, "INFO", "replication"))
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: a replica not in sync with its master", addr)
		}
		m, err := c.mastersSeenBy(addr)
		if err != nil {
			return err
		}
		if i == 0 {
			first = m
		} else if !slices.Equal(first, m) {
			return fmt.Errorf("%s sees masters %v, another node %v", addr, m, first)
		}
	}
	return nil
}

func (c *Cluster) do(addr string, cmd string, args ...any) (any, error) {
	conn, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(10*time.Second), redis.DialWriteTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.Do(cmd, args...)
}

// ClusterNode is a line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr string
	Master   bool
	MasterID string // of a replica
	Slots    int    // slots served
	Failed   bool
}

// NodesSeenBy is CLUSTER NODES as addr sees it.
func (c *Cluster) NodesSeenBy(addr string) ([]ClusterNode, error) {
	v, err := redis.String(c.do(addr, "CLUSTER", "NODES"))
	if err != nil {
		return nil, err
	}
	var out []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(v), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := ClusterNode{ID: f[0], Addr: strings.SplitN(f[1], "@", 2)[0], Master: strings.Contains(f[2], "master"),
			Failed: strings.Contains(f[2], "fail") && !strings.Contains(f[2], "fail?")}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, ok := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if ok {
				b, _ = strconv.Atoi(hi)
			}
			n.Slots += b - a + 1
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *Cluster) mastersSeenBy(addr string) ([]string, error) {
	ns, err := c.NodesSeenBy(addr)
	if err != nil {
		return nil, err
	}
	var m []string
	for _, n := range ns {
		if n.Master && n.Slots > 0 && !n.Failed {
			m = append(m, n.Addr)
		}
	}
	slices.Sort(m)
	return m, nil
}

// Masters are the nodes serving slots, as the first running node sees them.
func (c *Cluster) Masters() ([]ClusterNode, error) {
	seeds := c.Seeds()
	if len(seeds) == 0 {
		return nil, errors.New("webdistest: no cluster node runs")
	}
	ns, err := c.NodesSeenBy(seeds[0])
	if err != nil {
		return nil, err
	}
	var m []ClusterNode
	for _, n := range ns {
		if n.Master && n.Slots > 0 && !n.Failed {
			m = append(m, n)
		}
	}
	slices.SortFunc(m, func(a, b ClusterNode) int { return strings.Compare(a.Addr, b.Addr) })
	return m, nil
}

// Reshard moves slots slots from the master from to the master to (node
// IDs) with redis-cli --cluster reshard, keys and all (MIGRATE).
// redis-cli refuses to start while the nodes do not agree on the
// configuration yet (just after another reshard or add-node): it is run
// once the cluster is ok, and again after such a refusal.
func (c *Cluster) Reshard(from, to string, slots int) error {
	var err error
	for range 5 {
		if err = c.WaitOK(30 * time.Second); err != nil {
			return err
		}
		err = c.cli("redis-cli", "--cluster", "reshard", c.Seeds()[0], "--cluster-from", from, "--cluster-to", to,
			"--cluster-slots", strconv.Itoa(slots), "--cluster-yes", "--cluster-pipeline", "100")
		if err == nil || !strings.Contains(err.Error(), "agree") {
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

// AddMaster starts an empty node and adds it to the cluster as a master
// without slots (redis-cli --cluster add-node); it returns its ID.
func (c *Cluster) AddMaster() (*Process, string, error) {
	p, err := c.startNode()
	if err != nil {
		return nil, "", err
	}
	if err := c.cli("redis-cli", "--cluster", "add-node", p.Addr, c.Seeds()[0]); err != nil {
		return p, "", err
	}
	id, err := redis.String(c.do(p.Addr, "CLUSTER", "MYID"))
	if err != nil {
		return p, "", err
	}
	// The node is known once every node lists it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		known := true
		for _, a := range c.Seeds() {
			ns, err := c.NodesSeenBy(a)
			if err != nil || !slices.ContainsFunc(ns, func(n ClusterNode) bool { return n.ID == id }) {
				known = false
			}
		}
		if known {
			return p, id, nil
		}
		if time.Now().After(deadline) {
			return p, id, errors.New("webdistest: the added node is not known to every node")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill kills the node at addr with SIGKILL (kill -9) by its pid.
func (c *Cluster) Kill(addr string) error {
	for _, n := range c.Nodes {
		if n.Addr == addr && n.Running() {
			if err := syscall.Kill(n.Pid(), syscall.SIGKILL); err != nil {
				return err
			}
			<-n.Done()
			return nil
		}
	}
	return fmt.Errorf("webdistest: no running cluster node at %s", addr)
}

// Conn is a plain connection to the node at addr, for tests.
func (c *Cluster) Conn(addr string) (redis.Conn, error) {
	return redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second))
}

// Dump reads every key starting with prefix from every master (see Dump).
func (c *Cluster) Dump(prefix string) (map[string]Key, error) {
	ms, err := c.Masters()
	if err != nil {
		return nil, err
	}
	out := map[string]Key{}
	for _, m := range ms {
		conn, err := c.Conn(m.Addr)
		if err != nil {
			return nil, err
		}
		d, err := Dump(conn, prefix)
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Addr, err)
		}
		for k, v := range d {
			out[k] = v
		}
	}
	return out, nil
}

// Close stops every node by its pid.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Stop())
	}
	return errors.Join(errs...)
}

// NewCluster is RequireCluster, then StartCluster in a directory of t's;
// the cluster stops when t ends.
func NewCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	RequireCluster(t)
	c, err := StartCluster(t.TempDir(), masters, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ConnT is Conn for t: it fails t, and closes when t ends.
func (c *Cluster) ConnT(t testing.TB, addr string) redis.Conn {
	t.Helper()
	conn, err := c.Conn(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
