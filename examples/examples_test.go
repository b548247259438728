// Package examples_test runs the deployment examples of this directory
// with the real programs: examples/webdis.json with Webdis, and
// examples/nginx-redisrepl.conf with nginx in front of it, both with their
// paths and ports rewritten to test values (and nothing else), and
// examples/redisrepl.service through systemd-analyze when it is installed;
// examples/gateway.toml with the gateway and a redis-server, and
// examples/redisrepl-gateway.service like the service's unit.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/gateway"
	"github.com/redisrepl/redisrepl/webdis/pki"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// ---- processes ----------------------------------------------------------------

// start runs a program with webdistest.StartProcess, in dir, listening on
// addr; it is stopped by its pid when the test ends.
func start(t *testing.T, dir, name, addr string, deathSig syscall.Signal, argv ...string) *webdistest.Process {
	t.Helper()
	p, err := webdistest.StartProcess(name, addr, "", filepath.Join(dir, name+".out"), deathSig, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// waitFor polls check until it succeeds, p exits or 10 s pass.
func waitFor(t *testing.T, p *webdistest.Process, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if !p.Running() {
			t.Fatalf("%s exited before %s: %v\n%s", p.Name, what, err, p.Tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within 10s: %v\n%s", p.Name, what, err, p.Tail(40))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func startRedis(t *testing.T, dir string) (addr string, conn redis.Conn) {
	t.Helper()
	var (
		p   *webdistest.Process
		err error
	)
	for range 3 { // a free port may be taken meanwhile
		var port int
		if port, err = webdistest.FreePort(); err != nil {
			t.Fatal(err)
		}
		if p, err = webdistest.StartRedis(dir, port); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	c, err := redis.Dial("tcp", p.Addr, redis.DialConnectTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p.Addr, c
}

func port(t *testing.T, addr string) int {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(ps)
	return n
}

// ---- examples/webdis.json ---------------------------------------------------------

// webdisExample reads examples/webdis.json, checks the settings that make
// it a hub's Webdis, and rewrites only where it listens, where its Redis is
// and where it logs.
func webdisExample(t *testing.T, dir string, redisPort, httpPort int) string {
	t.Helper()
	data, err := os.ReadFile("webdis.json")
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatalf("webdis.json is not valid JSON: %v", err)
	}
	for key, want := range map[string]any{
		"redis_host": "127.0.0.1", "redis_port": 6379.0, "http_host": "127.0.0.1", "http_port": 7379.0,
		"daemonize": false, "websockets": false, "http_max_request_size": float64(512 << 20),
	} {
		if got := conf[key]; got != want {
			t.Errorf("webdis.json: %s is %v, want %v", key, got, want)
		}
	}
	if _, ok := conf["acl"].([]any); !ok {
		t.Fatal("webdis.json: no acl list")
	}
	conf["redis_port"] = redisPort
	conf["http_port"] = httpPort
	conf["logfile"] = filepath.Join(dir, "webdis.log")
	conf["pidfile"] = filepath.Join(dir, "webdis.pid")
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "webdis.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWebdis runs examples/webdis.json against the redis at redisAddr and
// returns Webdis's address once it answers.
func startWebdis(t *testing.T, dir, redisAddr string) string {
	t.Helper()
	httpPort, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := webdisExample(t, dir, port(t, redisAddr), httpPort)
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	p := start(t, dir, "webdis", addr, syscall.SIGKILL, "webdis", conf)
	client := &http.Client{Timeout: time.Second}
	waitFor(t, p, "PONG", func() error {
		code, body, err := post(client, "http://"+addr+"/", "PING.raw")
		if err == nil && (code != 200 || string(body) != "+PONG\r\n") {
			err = fmt.Errorf("HTTP %d %q", code, body)
		}
		return err
	})
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "webdis.log"))
			t.Logf("webdis log:\n%s\n%s", log, p.Tail(40))
		}
	})
	return addr
}

func post(c *http.Client, url, body string) (int, []byte, error) {
	resp, err := c.Post(url, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func cmd(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(webdis.AppendCommand(nil, bs...))
}

const setScript = "return redis.call('SET', KEYS[1], ARGV[1])"

// allowed is what redisrepl sends through Webdis, each with arguments that
// succeed, in an order that makes them succeed. Every command of the list
// in webdis.json appears here, so the list cannot grow unnoticed.
func allowed() [][]string {
	sum := sha1.Sum([]byte(setScript))
	at := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	return [][]string{
		{"PING"},
		{"INFO", "server"},
		{"TIME"},
		{"EVAL", setScript, "1", "t:eval", "v"},
		{"EVALSHA", hex.EncodeToString(sum[:]), "1", "t:eval", "w"},
		{"SET", "t:s", "a/b.c+d%\x00\xff"},
		{"APPEND", "t:s", "more"},
		{"GET", "t:s"},
		{"GETRANGE", "t:s", "0", "3"},
		{"STRLEN", "t:s"},
		{"HSET", "t:h", "f", "v"},
		{"HGETALL", "t:h"},
		{"HLEN", "t:h"},
		{"RPUSH", "t:l", "a", "b"},
		{"LRANGE", "t:l", "0", "-1"},
		{"LLEN", "t:l"},
		{"SADD", "t:set", "a"},
		{"SMEMBERS", "t:set"},
		{"SCARD", "t:set"},
		{"ZADD", "t:z", "1", "a"},
		{"ZRANGE", "t:z", "0", "-1", "WITHSCORES"},
		{"ZCARD", "t:z"},
		{"XADD", "t:x", "1-1", "f", "v"},
		{"XSETID", "t:x", "5-0"},
		{"TYPE", "t:x"},
		{"MEMORY", "USAGE", "t:h"},
		{"PEXPIRE", "t:s", "100000"},
		{"PTTL", "t:s"},
		{"TTL", "t:s"},
		{"PEXPIREAT", "t:s", at},
		{"PERSIST", "t:s"},
		{"RENAME", "t:s", "t:s2"},
		{"EXISTS", "t:s2"},
		{"DEL", "t:s2"},
		{"PUBLISH", "t:channel", "hello"},
		{"PSUBSCRIBE", "t:*"}, // tested as a stream
	}
}

// byPrefix are commands that webdis.json allows only because their name is
// a prefix of an entry (Webdis's matching rule), with that entry.
var byPrefix = map[string]string{"HGET": "HGETALL"}

// refused are commands an operator must never see pass, with real
// arguments: they would run if the ACL let them through.
var refused = [][]string{
	{"FLUSHALL"}, {"flushall"}, {"FlushDB"}, {"FLUSHDB", "ASYNC"},
	{"KEYS", "*"}, {"SCAN", "0"}, {"RANDOMKEY"},
	{"SHUTDOWN", "NOSAVE"}, {"DEBUG", "SLEEP", "0"}, {"MONITOR"},
	{"CONFIG", "GET", "notify-keyspace-events"}, {"CONFIG", "SET", "dir", "/tmp"}, {"CONFIG", "REWRITE"}, {"CONFIG", "RESETSTAT"},
	{"SLAVEOF", "127.0.0.1", "1"}, {"REPLICAOF", "NO", "ONE"}, {"MODULE", "LIST"}, {"ACL", "LIST"}, {"ACL", "SETUSER", "x", "on"},
	{"CLIENT", "LIST"}, {"CLIENT", "KILL", "TYPE", "normal"}, {"SAVE"}, {"BGSAVE"}, {"BGREWRITEAOF"},
	{"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}, {"MIGRATE", "127.0.0.1", "1", "t:h", "0", "100"},
	{"SWAPDB", "0", "1"}, {"MOVE", "t:h", "1"}, {"SELECT", "1"}, {"MULTI"}, {"EXEC"},
	{"SUBSCRIBE", "x"}, {"SYNC"}, {"PSYNC", "?", "-1"}, {"FAILOVER"}, {"CLUSTER", "INFO"}, {"LATENCY", "RESET"},
	{"SLOWLOG", "RESET"}, {"OBJECT", "ENCODING", "t:h"}, {"DUMP", "t:h"}, {"RESTORE", "t:new", "0", "x"},
	{"SETRANGE", "t:h", "0", "x"}, {"GETDEL", "t:h"}, {"INCR", "t:n"}, {"UNLINK", "t:h"}, {"SORT", "t:l"},
	{"EVAL_RO", "return 1", "0"}, {"FCALL", "f", "0"}, {"LPOP", "t:l"}, {"HDEL", "t:h", "f"}, {"EXPIRE", "t:h", "1"},
}

// TestWebdisExample runs examples/webdis.json with a real Webdis: every
// command redisrepl needs passes, the dangerous ones and every other
// command the Redis server knows get HTTP 403.
func TestWebdisExample(t *testing.T) {
	webdistest.Require(t)
	dir := t.TempDir()
	redisAddr, rc := startRedis(t, dir)
	addr := startWebdis(t, dir, redisAddr)
	url := "http://" + addr + "/"
	client := &http.Client{Timeout: 5 * time.Second}

	enabled := make(map[string]bool)
	for _, c := range allowed() {
		name := c[0]
		enabled[name] = true
		if name == "PSUBSCRIBE" {
			checkPSubscribe(t, client, url, rc, c[1])
			continue
		}
		code, body, err := post(client, url, cmd(c...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if code != http.StatusOK || len(body) == 0 || body[0] == '-' {
			t.Errorf("allowed %q: HTTP %d %q", c, code, body)
		}
	}
	if v, err := redis.String(rc.Do("GET", "t:eval")); err != nil || v != "w" {
		t.Errorf("EVAL/EVALSHA did not write: %q %v", v, err)
	}
	if v, err := redis.String(rc.Do("HGET", "t:h", "f")); err != nil || v != "v" {
		t.Errorf("HSET did not write: %q %v", v, err)
	}

	// The ACL in the file lists exactly the commands above.
	var conf struct {
		ACL []struct {
			Enabled  []string `json:"enabled"`
			Disabled []string `json:"disabled"`
		} `json:"acl"`
	}
	data, _ := os.ReadFile("webdis.json")
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, a := range conf.ACL {
		listed = append(listed, a.Enabled...)
	}
	for _, name := range listed {
		if !enabled[strings.ToUpper(name)] {
			t.Errorf("webdis.json enables %s, which this test does not know redisrepl to send", name)
		}
	}

	before, _ := redis.Int(rc.Do("DBSIZE"))
	for _, c := range refused {
		code, body, err := post(client, url, cmd(c...))
		if err != nil {
			t.Fatalf("%q: %v", c, err)
		}
		if code != http.StatusForbidden {
			t.Errorf("dangerous %q: HTTP %d %q, want 403", c, code, body)
		}
	}

	// Every other command of this Redis is refused too: the ACL matches
	// names by prefix, so the check is on real names, not on the list.
	names, err := redis.Strings(rc.Do("COMMAND", "LIST"))
	if err != nil {
		t.Fatal(err)
	}
	var passed []string
	checked := 0
	for _, n := range names {
		n = strings.ToUpper(n)
		if strings.Contains(n, "|") || enabled[n] {
			continue
		}
		checked++
		code, body, err := post(client, url, cmd(n))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		switch {
		case byPrefix[n] != "":
			if code == http.StatusForbidden {
				t.Errorf("%s is refused: has Webdis stopped matching by prefix? Update webdis.json's comments and this test", n)
			}
		case code != http.StatusForbidden:
			passed = append(passed, fmt.Sprintf("%s (HTTP %d %.60q)", n, code, body))
		}
	}
	if len(passed) > 0 {
		t.Errorf("%d commands not needed by redisrepl pass the ACL: %s", len(passed), strings.Join(passed, ", "))
	}
	t.Logf("%d other commands of this Redis checked: all refused but %d allowed by prefix (%v)", checked, len(byPrefix), byPrefix)

	// Nothing refused ran: the keys are all there, the server still runs.
	if after, err := redis.Int(rc.Do("DBSIZE")); err != nil || after != before || after == 0 {
		t.Errorf("DBSIZE %d before the refused commands, %d after (%v)", before, after, err)
	}

	// The allowing entry is for 127.0.0.1 only (nginx on the same host): a
	// client from another address is refused everything.
	other := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	if code, body, err := post(other, url, "PING.raw"); err != nil {
		t.Logf("cannot connect from 127.0.0.2 (%v): ip restriction not checked", err)
	} else if code != http.StatusForbidden {
		t.Errorf("PING from 127.0.0.2: HTTP %d %q, want 403", code, body)
	}
}

// checkPSubscribe opens a PSUBSCRIBE stream and waits for a message
// published directly in Redis.
func checkPSubscribe(t *testing.T, client *http.Client, url string, rc redis.Conn, pattern string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("PSUBSCRIBE/"+pattern))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("PSUBSCRIBE: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PSUBSCRIBE: HTTP %d %q", resp.StatusCode, b)
	}
	got := make(chan string, 1)
	go func() {
		r := bufio.NewReader(resp.Body)
		var seen bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			seen.Write(buf[:n])
			if bytes.Contains(seen.Bytes(), []byte("pmessage")) || err != nil {
				got <- seen.String()
				return
			}
			if bytes.Contains(seen.Bytes(), []byte("psubscribe")) {
				_, _ = rc.Do("PUBLISH", "t:chan", "hello")
			}
		}
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, "pmessage") || !strings.Contains(s, "hello") {
			t.Errorf("PSUBSCRIBE stream: %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Error("PSUBSCRIBE: no message within 5s")
	}
}

// ---- examples/nginx-redisrepl.conf ----------------------------------------------

// nginxWrapper is the minimal nginx.conf that includes the example the way
// Debian's includes conf.d/*.conf: inside http { }.
const nginxWrapper = `{{user}}worker_processes 2;
pid {{dir}}/nginx.pid;
error_log {{dir}}/nginx-error.log info;
events { worker_connections 256; }
http {
    access_log {{dir}}/nginx-access.log;
    client_body_temp_path {{dir}}/tmp/body;
    proxy_temp_path       {{dir}}/tmp/proxy;
    fastcgi_temp_path     {{dir}}/tmp/fastcgi;
    uwsgi_temp_path       {{dir}}/tmp/uwsgi;
    scgi_temp_path        {{dir}}/tmp/scgi;
    include {{dir}}/redisrepl.conf;
}
`

// nginxExample rewrites examples/nginx-redisrepl.conf to test values: the
// listening port (loopback, no IPv6), the certificate directory, the
// Webdis port and the log directory. Each replaced text must be found, so
// that a change to the example that this test would silently miss fails.
func nginxExample(t *testing.T, dir, certDir string, httpsPort, webdisPort int) string {
	t.Helper()
	data, err := os.ReadFile("nginx-redisrepl.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	for _, r := range []struct{ old, new string }{
		{"listen 443 ssl http2;", fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", httpsPort)},
		{"listen [::]:443 ssl http2;", "# (IPv6 listener removed by the test)"},
		{"/etc/nginx/redisrepl/", certDir + "/"},
		{"server 127.0.0.1:7379;", fmt.Sprintf("server 127.0.0.1:%d;", webdisPort)},
		{"/var/log/nginx/", dir + "/"},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("nginx-redisrepl.conf no longer contains %q: update this test", r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	for _, want := range []string{
		"ssl_verify_client      on;", "ssl_protocols       TLSv1.2 TLSv1.3;",
		"proxy_pass http://webdis/;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"proxy_buffering off;", "proxy_request_buffering on;", "proxy_read_timeout 3600s;",
		"proxy_send_timeout 3600s;", "client_max_body_size 64m;", "keepalive 64;", "keepalive_requests 100000;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx-redisrepl.conf lacks %q", want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "redisrepl.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers can then write the temp dirs above
	}
	main := strings.NewReplacer("{{user}}", user, "{{dir}}", dir).Replace(nginxWrapper)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testPKI makes, with package pki, the files the nginx example names
// (server.pem, server.key, ca.pem), a lab's client certificate, and a client
// certificate of a foreign CA.
type testPKI struct {
	dir                     string
	ca, labCert, labKey     string
	foreignCert, foreignKey string
	foreignCA               string
}

func makePKI(t *testing.T, dir string) testPKI {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	ca, err := pki.NewCA("example test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ca.WriteFiles(p("ca.pem"), p("ca.key"), false))
	c, k, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, 0)
	must(err)
	must(pki.WriteFiles(p("server.pem"), c, p("server.key"), k, false))
	c, k, err = ca.IssueClient("labA", 0)
	must(err)
	must(pki.WriteFiles(p("labA.pem"), c, p("labA.key"), k, false))
	foreign, err := pki.NewCA("foreign CA", 0)
	must(err)
	must(foreign.WriteFiles(p("foreign-ca.pem"), p("foreign-ca.key"), false))
	c, k, err = foreign.IssueClient("labA", 0) // same name, wrong CA
	must(err)
	must(pki.WriteFiles(p("foreign.pem"), c, p("foreign.key"), k, false))
	return testPKI{dir: dir, ca: p("ca.pem"), labCert: p("labA.pem"), labKey: p("labA.key"),
		foreignCert: p("foreign.pem"), foreignKey: p("foreign.key"), foreignCA: p("foreign-ca.pem")}
}

func httpsClient(t *testing.T, caFile, certFile, keyFile string) *http.Client {
	t.Helper()
	cfg, err := webdistest.TLSConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestNginxExample runs examples/nginx-redisrepl.conf in front of
// examples/webdis.json, as the hub: a lab's certificate gets through,
// binary-safe, streams included; no certificate or a foreign one gets 400.
func TestNginxExample(t *testing.T) {
	webdistest.Require(t)
	dir := t.TempDir()
	certs := makePKI(t, filepath.Join(dir, "certs"))
	redisAddr, rc := startRedis(t, dir)
	webdisAddr := startWebdis(t, dir, redisAddr)

	httpsPort, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := nginxExample(t, dir, certs.dir, httpsPort, port(t, webdisAddr))
	if out, err := exec.Command(mustFind(t, "nginx"), "-t", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ng := start(t, dir, "nginx", fmt.Sprintf("127.0.0.1:%d", httpsPort), syscall.SIGTERM, "nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"), "-g", "daemon off;")
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "nginx-error.log"))
			t.Logf("nginx error log:\n%s\n%s", log, ng.Tail(40))
		}
	})
	base := fmt.Sprintf("https://127.0.0.1:%d/redis", httpsPort)
	lab := httpsClient(t, certs.ca, certs.labCert, certs.labKey)
	waitFor(t, ng, "PONG through nginx", func() error {
		code, body, err := post(lab, base+"/", "PING.raw")
		if err == nil && code != 200 {
			err = fmt.Errorf("HTTP %d %q", code, body)
		}
		return err
	})

	// A key with a "/" (percent-encoded in the POST body) arrives whole.
	code, body, err := post(lab, base+"/", "SET/a%2Fb/v.raw")
	if err != nil || code != http.StatusOK || string(body) != "+OK\r\n" {
		t.Fatalf("SET/a%%2Fb/v.raw with the lab's certificate: HTTP %d %q %v", code, body, err)
	}
	if v, err := redis.String(rc.Do("GET", "a/b")); err != nil || v != "v" {
		t.Errorf(`key "a/b" after the SET: %q %v`, v, err)
	}

	// No certificate, or one of another CA: HTTP 400 from nginx.
	for name, c := range map[string]*http.Client{
		"no client certificate":       httpsClient(t, certs.ca, "", ""),
		"certificate of a foreign CA": httpsClient(t, certs.ca, certs.foreignCert, certs.foreignKey),
	} {
		code, body, err := post(c, base+"/", "SET/refused/1.raw")
		if err != nil || code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %v, want 400\n%.300s", name, code, err, body)
		}
	}
	if n, _ := redis.Int(rc.Do("EXISTS", "refused")); n != 0 {
		t.Error("a refused client wrote a key")
	}
	// The server certificate does not verify with another CA.
	if _, _, err := post(httpsClient(t, certs.foreignCA, certs.labCert, certs.labKey), base+"/", "PING.raw"); err == nil {
		t.Error("the hub's certificate verified against a foreign CA")
	}

	// GET (unsafe paths: nginx decodes %2F) is refused; the ACL holds
	// through nginx; anything outside /redis/ is 404.
	if resp, err := lab.Get(base + "/GET/a%2Fb"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET through nginx: %v %v, want 403", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if code, _, err := post(lab, base+"/", "FLUSHALL.raw"); err != nil || code != http.StatusForbidden {
		t.Errorf("FLUSHALL through nginx: HTTP %d %v, want 403", code, err)
	}
	if code, _, err := post(lab, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), "PING.raw"); err != nil || code != http.StatusNotFound {
		t.Errorf("POST / (outside /redis/): HTTP %d %v, want 404", code, err)
	}

	// A 3 MiB body passes (nginx's default limit is 1 MiB).
	big := strings.Repeat("x", 3<<20)
	if code, body, err := post(lab, base+"/", "SET/big/"+big+".raw"); err != nil || code != http.StatusOK {
		t.Errorf("3 MiB SET: HTTP %d %.100q %v", code, body, err)
	}
	if n, _ := redis.Int(rc.Do("STRLEN", "big")); n != len(big) {
		t.Errorf("3 MiB SET stored %d bytes", n)
	}

	// redisrepl's own client: binary-safe commands, and a PSUBSCRIBE stream
	// of keyspace events passed on as they come (proxy_buffering off).
	if _, err := rc.Do("CONFIG", "SET", "notify-keyspace-events", "KA"); err != nil {
		t.Fatal(err)
	}
	wc, err := webdis.New(webdis.Options{URL: base, CertFile: certs.labCert, KeyFile: certs.labKey, CAFile: certs.ca, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	key := []byte("lab:k/\x00+ %.\xff\n")
	subscribed := make(chan struct{})
	events := make(chan string, 16)
	subDone := make(chan error, 1)
	go func() {
		subDone <- wc.Subscribe(ctx, []byte("__keyspace@0__:lab:*"), func() { close(subscribed) }, func(ch, data []byte) {
			events <- string(ch) + " " + string(data)
		})
	}()
	select {
	case <-subscribed:
	case err := <-subDone:
		t.Fatalf("PSUBSCRIBE through nginx ended: %v", err)
	case <-ctx.Done():
		t.Fatal("PSUBSCRIBE through nginx: not confirmed")
	}
	if _, err := wc.Do(ctx, []byte("EVAL"), []byte(setScript), []byte("1"), key, []byte("v\x00")); err != nil {
		t.Fatalf("EVAL through nginx: %v", err)
	}
	select {
	case ev := <-events:
		if want := "__keyspace@0__:" + string(key) + " set"; ev != want {
			t.Errorf("event %q, want %q", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("no keyspace event through nginx within 5s (is the stream buffered?)")
	}
	if v, err := redis.Bytes(wc.Do(ctx, []byte("GET"), key)); err != nil || string(v) != "v\x00" {
		t.Errorf("GET of a binary key through nginx: %q %v", v, err)
	}
	cancel()
	if err := <-subDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("subscription ended: %v", err)
	}

	// The access log names the lab (nginx flushes it when it stops).
	if err := ng.Stop(); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(dir, "redisrepl-access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"CN=labA,O=redisrepl" .*"POST /redis/ HTTP/1.1" 200`).Match(log) {
		t.Errorf("access log does not name the lab:\n%.1000s", log)
	}
}

func mustFind(t *testing.T, name string) string {
	t.Helper()
	p, err := webdistest.FindBinary(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- examples/redisrepl.service -----------------------------------------------

// TestSystemdUnitExample checks examples/redisrepl.service with
// systemd-analyze verify (skipped when systemd-analyze is not installed),
// after pointing ExecStart at a file that exists.
func TestSystemdUnitExample(t *testing.T) {
	data, err := os.ReadFile("redisrepl.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/redisrepl -config /etc/redisrepl.toml", "ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure", "StateDirectory=redisrepl", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"ReadOnlyPaths=", "LimitNOFILE=",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("redisrepl.service lacks %q", want)
		}
	}
	sa, err := webdistest.FindBinary("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: unit not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "redisrepl.service")
	unit = strings.Replace(unit, "ExecStart=/usr/local/bin/redisrepl ", "ExecStart="+self+" ", 1)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	// Warnings (unknown keys, bad values) do not change the exit status:
	// any line about this unit fails the test. Lines about other units of
	// the machine are not ours to judge.
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "redisrepl.service") || strings.Contains(line, path) {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
	if len(out) > 0 {
		t.Logf("systemd-analyze verify output:\n%s", out)
	}

	// The sandbox: exposure at most 2.0 of 10 ("OK"), if this systemd can
	// judge a unit file offline (systemd >= 250).
	out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for redisrepl.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Logf("systemd-analyze security --offline not supported here (%v): exposure not checked", err)
		return
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("exposure level %s > 2.0:\n%s", m[1], out)
	} else {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}

// ---- examples/gateway.toml and examples/redisrepl-gateway.service -------------

// TestGatewayExample runs examples/gateway.toml (paths, listen address and
// the hub Redis rewritten to test values, nothing else) with a real
// redis-server: labA writes its namespace and reads the shared prefix, labB
// cannot reach labA's keys.
func TestGatewayExample(t *testing.T) {
	webdistest.Require(t)
	dir := t.TempDir()
	ca, err := pki.NewCA("example CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), true); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "hub.pem"), certPEM, filepath.Join(dir, "hub.key"), keyPEM, true); err != nil {
		t.Fatal(err)
	}
	for _, lab := range []string{"labA", "labB"} {
		c, k, err := ca.IssueClient(lab, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(filepath.Join(dir, lab+".pem"), c, filepath.Join(dir, lab+".key"), k, true); err != nil {
			t.Fatal(err)
		}
	}
	rport, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rds, err := webdistest.StartRedis(dir, rport)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rds.Stop() })
	gport, err := webdistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/etc/redisrepl/pki/", dir+"/",
		`"0.0.0.0:8443"`, fmt.Sprintf(`"127.0.0.1:%d"`, gport),
		"redis://127.0.0.1:6379/0", "redis://"+rds.Addr+"/0",
		`"127.0.0.1:9122"`, `""`).Replace(string(data))
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadGateway(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	url := fmt.Sprintf("https://127.0.0.1:%d/redis", gport)
	client := func(lab string) *webdis.Client {
		c, err := webdis.New(webdis.Options{URL: url, CertFile: filepath.Join(dir, lab+".pem"),
			KeyFile: filepath.Join(dir, lab+".key"), CAFile: filepath.Join(dir, "ca.pem")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	a, b := client("labA"), client("labB")
	ctx := context.Background()
	direct, err := redis.Dial("tcp", rds.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	direct.Do("SET", "shared:doc", "for all")
	if _, err := a.Do(ctx, []byte("SET"), []byte("labA:x"), []byte("1")); err != nil {
		t.Fatalf("labA writes its namespace: %v", err)
	}
	if v, err := redis.String(a.Do(ctx, []byte("GET"), []byte("shared:doc"))); err != nil || v != "for all" {
		t.Errorf("labA reads shared: %q %v", v, err)
	}
	if _, err := a.Do(ctx, []byte("SET"), []byte("shared:doc"), []byte("mine")); err == nil {
		t.Error("labA wrote the read-only prefix")
	}
	for _, cmd := range [][]byte{[]byte("GET"), []byte("DEL")} {
		if _, err := b.Do(ctx, cmd, []byte("labA:x")); err == nil {
			t.Errorf("labB ran %s on labA's key", cmd)
		}
	}
	if v, _ := redis.String(direct.Do("GET", "labA:x")); v != "1" {
		t.Errorf("labA:x is %q", v)
	}
}

// TestGatewaySystemdUnitExample checks examples/redisrepl-gateway.service
// as TestSystemdUnitExample checks the service's unit.
func TestGatewaySystemdUnitExample(t *testing.T) {
	data, err := os.ReadFile("redisrepl-gateway.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/redisrepl gateway -config /etc/redisrepl-gateway.toml", "ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure", "RestartPreventExitStatus=2", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "LimitNOFILE=",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("redisrepl-gateway.service lacks %q", want)
		}
	}
	sa, err := webdistest.FindBinary("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: unit not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "redisrepl-gateway.service")
	unit = strings.Replace(unit, "ExecStart=/usr/local/bin/redisrepl ", "ExecStart="+self+" ", 1)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "redisrepl-gateway.service") || strings.Contains(line, path) {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}
