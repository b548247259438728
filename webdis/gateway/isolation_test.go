package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/webdis"
	"github.com/redisrepl/redisrepl/webdis/pki"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// enc is a command in Webdis's POST syntax with a raw reply, every
// argument percent-encoded (as the link sends them).
func enc(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(webdis.AppendCommand(nil, bs...))
}

// refused: the gateway answered 403 with an empty body, or Redis refused
// the command under the tenant's ACL user (NOPERM; inside a script, the
// script's error names the ACL refusal).
func refused(status int, body string) bool {
	return status == http.StatusForbidden && body == "" ||
		status == http.StatusOK && (strings.HasPrefix(body, "-NOPERM") ||
			strings.HasPrefix(body, "-ERR The user executing the script can't") ||
			strings.HasPrefix(body, "-ERR This Redis command is not allowed from script") ||
			strings.HasPrefix(body, "-ERR ACL failure in script")) // Valkey 8
}

func seedA(t *testing.T, e *env) {
	t.Helper()
	c := e.direct(t)
	for _, cmd := range [][]any{
		{"SET", "labA:str", "secret"},
		{"HSET", "labA:h", "f", "v"},
		{"RPUSH", "labA:list", "3", "1", "2"},
		{"SADD", "labA:set", "m"},
		{"SET", "shared:x", "common"},
		{"SET", "labB:own", "mine"},
		{"RPUSH", "labB:list", "3", "1", "2"},
		{"SET", "other:root", "hub"},
	} {
		if _, err := c.Do(cmd[0].(string), cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIsolation is the isolation matrix: tenant B's certificate against
// tenant A's keys, channels and the hub itself.
func TestIsolation(t *testing.T) {
	e := newEnv(t, tenantsAB)
	seedA(t, e)
	before := e.snapshot(t)
	b := e.client(t, "labB")
	undeclared := "return redis.call('GET','labA:str')"
	attempts := []struct {
		what string
		args []string
	}{
		{"read", []string{"GET", "labA:str"}},
		{"read hash", []string{"HGETALL", "labA:h"}},
		{"type", []string{"TYPE", "labA:str"}},
		{"exists", []string{"EXISTS", "labA:str"}},
		{"dump", []string{"DUMP", "labA:str"}},
		{"strlen", []string{"STRLEN", "labA:str"}},
		{"mget", []string{"MGET", "labB:own", "labA:str"}},
		{"object", []string{"OBJECT", "ENCODING", "labA:str"}},
		{"ttl", []string{"PTTL", "labA:str"}},
		{"memory", []string{"MEMORY", "USAGE", "labA:str"}},
		{"read shared", []string{"GET", "shared:x"}},
		{"sort by", []string{"SORT", "labB:list", "BY", "labA:*"}},
		{"sort get", []string{"SORT", "labB:list", "GET", "labA:*"}},
		{"sort other", []string{"SORT", "labA:list"}},
		{"write", []string{"SET", "labA:str", "stolen"}},
		{"append", []string{"APPEND", "labA:str", "x"}},
		{"hset", []string{"HSET", "labA:h", "f", "x"}},
		{"new key", []string{"SET", "labA:new", "x"}},
		{"mset", []string{"MSET", "labB:x", "1", "labA:str", "2"}},
		{"delete", []string{"DEL", "labA:str"}},
		{"unlink", []string{"UNLINK", "labA:h"}},
		{"expire", []string{"EXPIRE", "labA:str", "1"}},
		{"rename out", []string{"RENAME", "labA:str", "labB:stolen"}},
		{"rename in", []string{"RENAME", "labB:own", "labA:str"}},
		{"copy out", []string{"COPY", "labA:str", "labB:copy"}},
		{"copy in", []string{"COPY", "labB:own", "labA:new", "REPLACE"}},
		{"copy db", []string{"COPY", "labB:own", "labB:own", "DB", "1"}},
		{"smove", []string{"SMOVE", "labA:set", "labB:set", "m"}},
		{"lmove", []string{"LMOVE", "labA:list", "labB:list", "LEFT", "LEFT"}},
		{"write shared", []string{"SET", "shared:x", "y"}},
		{"eval undeclared read", []string{"EVAL", undeclared, "0"}},
		{"eval declared read", []string{"EVAL", "return redis.call('GET',KEYS[1])", "1", "labA:str"}},
		{"eval undeclared delete", []string{"EVAL", "return redis.call('DEL','labA:str')", "0"}},
		{"eval declared write", []string{"EVAL", "return redis.call('SET',KEYS[1],'x')", "1", "labA:str"}},
		{"eval scan", []string{"EVAL", "return redis.call('SCAN','0','COUNT','1000')[2]", "0"}},
		{"eval keys", []string{"EVAL", "return redis.call('KEYS','*')", "0"}},
		{"eval randomkey", []string{"EVAL", "return redis.call('RANDOMKEY')", "0"}},
		{"eval flushall", []string{"EVAL", "return redis.call('FLUSHALL')", "0"}},
		{"eval config", []string{"EVAL", "return redis.call('CONFIG','SET','maxmemory','1')", "0"}},
		{"eval acl", []string{"EVAL", "return redis.call('ACL','SETUSER','default','off')", "0"}},
		{"eval select", []string{"EVAL", "redis.call('SELECT','1') return redis.call('SET','labA:str','x')", "0"}},
		{"eval publish", []string{"EVAL", "return redis.call('PUBLISH','__keyspace@0__:labA:str','del')", "0"}},
		{"eval info", []string{"EVAL", "return redis.call('INFO','keyspace')", "0"}},
		{"randomkey", []string{"RANDOMKEY"}},
		{"publish A's channel", []string{"PUBLISH", "__keyspace@0__:labA:str", "del"}},
		{"info keyspace", []string{"INFO", "keyspace"}},
		{"info all", []string{"INFO", "all"}},
		{"dbsize", []string{"DBSIZE"}},
	}
	for _, cmd := range []string{
		"CONFIG/SET/maxmemory/1", "CONFIG/GET/*", "CONFIG/RESETSTAT", "FLUSHALL", "FLUSHDB", "SWAPDB/0/1",
		"MOVE/labB:own/1", "ACL/SETUSER/default/off", "ACL/LIST", "ACL/WHOAMI", "ACL/DELUSER/redisrepl-gw-labA",
		"DEBUG/SLEEP/0", "SHUTDOWN/NOSAVE", "CLIENT/LIST", "CLIENT/KILL/TYPE/normal", "MIGRATE/127.0.0.1/1/labA:str/0/1000",
		"MODULE/LIST", "SELECT/1", "MULTI", "EXEC", "WATCH/labA:str", "DISCARD", "AUTH/default/x", "HELLO/3/AUTH/default/x",
		"RESET", "MONITOR", "SAVE", "BGSAVE", "BGREWRITEAOF", "SLOWLOG/GET", "LATENCY/LATEST", "SCRIPT/FLUSH",
		"FUNCTION/FLUSH", "FUNCTION/LIST", "FCALL/f/0", "LASTSAVE", "PUBSUB/CHANNELS", "COMMAND", "MEMORY/STATS",
		"REPLICAOF/127.0.0.1/1", "SLAVEOF/NO/ONE", "SYNC", "PSYNC/?/-1", "WAIT/0/0", "FAILOVER", "RESTORE/labB:r/0/x",
		"BLPOP/labB:list/0", "XREAD/BLOCK/0/STREAMS/labB:s/$", "OBJECT/FREQ/labA:str", "SORT/labA:list/STORE/labB:s",
	} {
		attempts = append(attempts, struct {
			what string
			args []string
		}{"admin " + cmd, strings.Split(cmd, "/")})
	}
	for _, a := range attempts {
		status, body := post(t, b, e.url, enc(a.args...))
		if !refused(status, body) {
			t.Errorf("%s (%s): not refused: %d %q", a.what, strings.Join(a.args, " "), status, body)
		}
	}
	// Webdis's db prefix: only the hub's database.
	if status, body := post(t, b, e.url, "1/SET/labB:x/1.raw"); !refused(status, body) {
		t.Errorf("a write to db 1: %d %q", status, body)
	}

	// Listing key names: replies hold B's keys only.
	for _, args := range [][]string{
		{"SCAN", "0", "COUNT", "1000"},
		{"SCAN", "0", "MATCH", "labA:*", "COUNT", "1000"},
		{"SCAN", "0", "MATCH", "*", "COUNT", "1000"},
		{"KEYS", "*"},
		{"KEYS", "labA:*"},
		{"KEYS", "shared:*"},
	} {
		status, body := post(t, b, e.url, enc(args...))
		if status != http.StatusOK || strings.Contains(body, "labA:") || strings.Contains(body, "shared:") || strings.Contains(body, "other:") {
			t.Errorf("%v: %d %q shows another tenant's keys", args, status, body)
		}
	}
	status, body := post(t, b, e.url, enc("KEYS", "*"))
	if status != http.StatusOK || !strings.Contains(body, "labB:own") {
		t.Errorf("KEYS * does not show B's own key: %d %q", status, body)
	}
	// The link's scan script, with a pattern reaching out of B's namespace.
	const scanScript = "\nlocal r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])\nlocal out = {r[1]}\nfor _, k in ipairs(r[2]) do out[#out + 1] = k end\nreturn out\n"
	for _, pat := range []string{"*", "labA:*", "labB:*"} {
		status, body := post(t, b, e.url, enc("EVAL", scanScript, "0", "0", pat, "1000"))
		if status != http.StatusOK || strings.Contains(body, "labA:") || strings.Contains(body, "shared:") {
			t.Errorf("scan script %q: %d %q", pat, status, body)
		}
	}

	// Subscriptions to A's events or to everything.
	for _, s := range []string{
		"PSUBSCRIBE/__keyspace@0__:labA:*", "PSUBSCRIBE/*", "PSUBSCRIBE/__keyevent@0__:set",
		"PSUBSCRIBE/__keyevent@0__:*", "PSUBSCRIBE/__key*", "PSUBSCRIBE/__keyspace@0__:*",
		"PSUBSCRIBE/__keyspace@0__:lab[AB]:*", "SUBSCRIBE/__keyspace@0__:labA:str",
		"SUBSCRIBE/__keyevent@0__:set", "SUBSCRIBE/labA:chan", "PSUBSCRIBE/__keyspace@0__:labB:*/__keyspace@0__:labA:*",
	} {
		if status, body := post(t, b, e.url, s+".raw"); !refused(status, body) {
			t.Errorf("%s: not refused: %d %q", s, status, body)
		}
	}

	after := e.snapshot(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("the hub changed: %s was %s, is %s", k, v, after[k])
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("the hub changed: %s appeared (%s)", k, v)
		}
	}
	if s := e.logs.String(); !strings.Contains(s, `"tenant":"labB","cmd":"FLUSHALL","reason":"command not allowed"`) ||
		!strings.Contains(s, `"tenant":"labB","cmd":"GET","reason":"refused by the tenant's ACL user"`) {
		t.Errorf("refusals are not logged with tenant, command and reason:\n%s", tail(s, 5))
	}
	if strings.Contains(e.logs.String(), "stolen") {
		t.Error("a value was logged")
	}
}

// TestOwnNamespace: the same kinds of commands inside B's namespaces work,
// and A's read prefixes are readable but not writable.
func TestOwnNamespace(t *testing.T) {
	e := newEnv(t, tenantsAB)
	seedA(t, e)
	b := e.client(t, "labB")
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"SET", "labB:k", "v"}, "+OK\r\n"},
		{[]string{"GET", "labB:k"}, "$1\r\nv\r\n"},
		{[]string{"HSET", "labB:h", "f", "v"}, ":1\r\n"},
		{[]string{"RENAME", "labB:k", "labB:k2"}, "+OK\r\n"},
		{[]string{"COPY", "labB:k2", "labB:k3"}, ":1\r\n"},
		{[]string{"SET", "b*[x]:k", "glob"}, "+OK\r\n"},
		{[]string{"GET", "b*[x]:k"}, "$4\r\nglob\r\n"},
		{[]string{"SORT", "labB:list"}, "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"},
		{[]string{"KEYS", "labB:k*"}, ""},
		{[]string{"DEL", "labB:k2", "labB:k3"}, ":2\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
	}
	for _, s := range steps {
		status, body := post(t, b, e.url, enc(s.args...))
		if status != http.StatusOK || s.want != "" && body != s.want {
			t.Errorf("%q: %d %q, want %q", s.args, status, body, s.want)
		}
	}
	status, body := post(t, b, e.url, enc("SCAN", "0", "COUNT", "1000"))
	if status != 200 || !strings.Contains(body, "labB:own") || !strings.Contains(body, "b*[x]:k") {
		t.Errorf("SCAN does not list B's keys: %d %q", status, body)
	}
	// A reads the shared prefix but cannot write or delete it.
	a := e.client(t, "labA")
	if status, body := post(t, a, e.url, enc("GET", "shared:x")); status != 200 || body != "$6\r\ncommon\r\n" {
		t.Errorf("A reads shared:x: %d %q", status, body)
	}
	for _, args := range [][]string{{"SET", "shared:x", "y"}, {"DEL", "shared:x"}, {"GET", "labB:own"}} {
		if status, body := post(t, a, e.url, enc(args...)); !refused(status, body) {
			t.Errorf("A %q: %d %q", args, status, body)
		}
	}
	// A follows the shared prefix's events (served on the gateway's own
	// connection) but cannot publish fake ones, not even from a script.
	direct := e.direct(t)
	direct.Do("CONFIG", "SET", "notify-keyspace-events", "KA")
	evShared := subscribe(t, a, e.url, "__keyspace@0__:shared:*")
	direct.Do("SET", "shared:y", "1")
	webdistest.WaitFor(t, 3*time.Second, "A's event of shared:y", func() bool { return evShared.has("__keyspace@0__:shared:y") })
	for _, args := range [][]string{
		{"PUBLISH", "__keyspace@0__:shared:y", "del"},
		{"EVAL", "return redis.call('PUBLISH','__keyspace@0__:shared:y','del')", "0"},
	} {
		if status, body := post(t, a, e.url, enc(args...)); !refused(status, body) {
			t.Errorf("A %q: %d %q", args, status, body)
		}
	}
	// B's keyspace events, and a narrower pattern inside its namespace.
	for _, pat := range []string{"__keyspace@0__:labB:*", "__keyspace@0__:labB:sub*"} {
		direct := e.direct(t)
		direct.Do("CONFIG", "SET", "notify-keyspace-events", "KA")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/", strings.NewReader(enc("PSUBSCRIBE", pat)))
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := webdis.NewReplyReader(resp.Body, 1<<20)
		v, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := redis.Strings(v, nil); len(m) != 3 || m[0] != "psubscribe" || m[1] != pat || m[2] != "1" {
			t.Errorf("confirmation %q", m)
		}
		if _, err := redis.DoContext(direct, ctx, "SET", "labB:other", "1"); err != nil {
			t.Fatal(err)
		}
		direct.Do("SET", "labB:sub1", "1")
		v, err = r.Read()
		if err != nil {
			t.Fatal(err)
		}
		m, _ := redis.Strings(v, nil)
		wantCh := "__keyspace@0__:labB:other"
		if strings.Contains(pat, "sub") {
			wantCh = "__keyspace@0__:labB:sub1" // labB:other filtered out
		}
		if len(m) != 4 || m[0] != "pmessage" || m[1] != pat || m[2] != wantCh || m[3] != "set" {
			t.Errorf("PSUBSCRIBE %s: message %q, want channel %s", pat, m, wantCh)
		}
		cancel()
		resp.Body.Close()
	}
}

// TestRefusedCertificates: no certificate, another CA's, an expired one
// are refused at the handshake; a valid one naming no tenant gets 403 and
// nothing runs.
func TestRefusedCertificates(t *testing.T) {
	e := newEnv(t, tenantsAB)
	seedA(t, e)
	before := e.snapshot(t)

	noCert := e.tlsClient(t, nil, nil)
	if _, err := noCert.Post(e.url+"/", "text/plain", strings.NewReader("PING")); err == nil {
		t.Error("no client certificate: request served")
	}
	other, err := newForeignClient(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Post(e.url+"/", "text/plain", strings.NewReader("PING")); err == nil {
		t.Error("a certificate of another CA: request served")
	}
	certPEM, keyPEM, err := e.ca.IssueClient("labA", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	expired := e.tlsClient(t, certPEM, keyPEM)
	if _, err := expired.Post(e.url+"/", "text/plain", strings.NewReader("PING")); err == nil {
		t.Error("an expired certificate: request served")
	}
	unknown := e.client(t, "labC")
	for _, body := range []string{"PING", "SET/labC:x/1", "SET/labA:str/x", "FLUSHALL", "PSUBSCRIBE/*"} {
		resp, err := unknown.Post(e.url+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || len(data) != 0 {
			t.Errorf("unknown CN, %s: %d %q", body, resp.StatusCode, data)
		}
	}
	after := e.snapshot(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("the hub changed: %s", k)
		}
	}
	if len(after) != len(before) {
		t.Errorf("the hub changed: %d entries, was %d", len(after), len(before))
	}
	if !strings.Contains(e.logs.String(), `"client":"labC","reason":"unknown certificate"`) {
		t.Errorf("unknown certificate not logged:\n%s", tail(e.logs.String(), 5))
	}
}

func newForeignClient(e *env) (*http.Client, error) {
	foreign, err := pki.NewCA("foreign CA", 0)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := foreign.IssueClient("labA", 0)
	if err != nil {
		return nil, err
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{kp},
		// Go sends no certificate the server's CA list does not match:
		// present it anyway, as another client might.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil },
	}}, Timeout: 5 * time.Second}, nil
}
