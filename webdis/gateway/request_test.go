package gateway

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis"
)

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		uri, body string
		args      []string
		f         format
		db        int
		err       bool
	}{
		{uri: "PING", args: []string{"PING"}},
		{uri: "SET/k/v", args: []string{"SET", "k", "v"}},
		{uri: "SET/k/v.raw", args: []string{"SET", "k", "v"}, f: fmtRaw},
		{uri: "SET/k/v.json", args: []string{"SET", "k", "v"}},
		{uri: "SET/k/v.txt", args: []string{"SET", "k", "v"}, f: fmtCustom},
		{uri: "SET/k/a.foo", args: []string{"SET", "k", "a.foo"}},
		{uri: "SET/k/a.b/c", args: []string{"SET", "k", "a.b", "c"}},
		{uri: "SET/k/.raw", args: []string{"SET", "k", ""}, f: fmtRaw},
		{uri: "SET/k//.raw", args: []string{"SET", "k", "", ""}, f: fmtRaw},
		{uri: "SET/a%2Fb/%00%ff%2B+%25", args: []string{"SET", "a/b", "\x00\xff+ %"}},
		{uri: "SET/k/100%/%2/%zz", args: []string{"SET", "k", "100%", "%2", "%zz"}},
		{uri: "%47ET/k", args: []string{"%47ET", "k"}}, // the name is not decoded (Webdis)
		{uri: "SET/k/a?b", args: []string{"SET", "k", "a"}},
		{uri: "0/GET/k", args: []string{"GET", "k"}, db: 0},
		{uri: "12/GET/k.raw", args: []string{"GET", "k"}, db: 12, f: fmtRaw},
		{uri: "/GET/k", args: []string{"GET", "k"}, db: 0},
		{uri: "0", args: []string{"0"}, db: -1},
		{uri: "SET/pk", body: "a/b%2F+", args: []string{"SET", "pk", "a/b%2F+"}},
		{uri: "", err: true},
		{uri: "?x", err: true},
	} {
		cmd, err := parseCommand(nil, []byte(c.uri), []byte(c.body))
		if c.err {
			if err == nil {
				t.Errorf("%q: no error", c.uri)
			}
			continue
		}
		var got []string
		for _, a := range cmd.args {
			got = append(got, string(a))
		}
		wantDB := c.db
		if wantDB == 0 && !strings.Contains(c.uri, "/GET") {
			wantDB = -1
		}
		if err != nil || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.args) || cmd.format != c.f || cmd.db != wantDB {
			t.Errorf("%q: %q format %d db %d %v, want %q format %d db %d", c.uri, got, cmd.format, cmd.db, err, c.args, c.f, wantDB)
		}
	}
}

func TestReplies(t *testing.T) {
	for _, c := range []struct {
		verb string
		v    any
		json string
		raw  string
	}{
		{"GET", []byte("v"), `{"GET":"v"}`, "$1\r\nv\r\n"},
		{"GET", nil, `{"GET":null}`, "$-1\r\n"},
		{"SET", "OK", `{"SET":[true,"OK"]}`, "+OK\r\n"},
		{"INCR", redis.Error("ERR no"), `{"INCR":[false,"ERR no"]}`, "-ERR no\r\n"},
		{"INCR", int64(-3000000000), `{"INCR":-3000000000}`, ":-3000000000\r\n"},
		{"HGETALL", []any{[]byte("f"), []byte("v"), []byte("g"), []byte("w")}, `{"HGETALL":{"f":"v","g":"w"}}`, "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n"},
		{"hgetall", []any{}, `{"hgetall":{}}`, "*0\r\n"},
		{"LRANGE", []any{[]byte("a"), int64(7), nil, []any{[]byte("n")}, "OK"}, `{"LRANGE":["a",7,null,["n"],null]}`,
			"*5\r\n$1\r\na\r\n$1\r\n7\r\n$-1\r\n*1\r\n$1\r\nn\r\n+OK\r\n"},
		{"ECHO", []byte("\"\\\b\f\n\r\t\x01\x7f/é\xff\x00"), `{"ECHO":"\"\\\b\f\n\r\t\u0001` + "\x7f/é\uFFFD" + `\u0000"}`, ""},
		{"INFO", []byte("# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n"), `{"INFO":{"# Server\r\nredis_version":"7.0.15","run_id":"abc"}}`, ""},
	} {
		if got := string(appendJSON(nil, []byte(c.verb), c.v)); got != c.json {
			t.Errorf("JSON %s %v: %s, want %s", c.verb, c.v, got, c.json)
		}
		if c.raw == "" {
			continue
		}
		if got := string(appendRaw(nil, c.v, false)); got != c.raw {
			t.Errorf("raw %v: %q, want %q", c.v, got, c.raw)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a*c", "abxc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"[ab]x", "bx", true}, {"[^ab]x", "bx", false}, {"[a-c]x", "bx", true}, {"a\\*", "a*", true}, {"a\\*", "ab", false},
		{"__keyspace@0__:lab1:*", "__keyspace@0__:lab1:k", true}, {"__keyspace@0__:lab1:*", "__keyspace@0__:lab2:k", false},
		{"b\\*\\[x\\]:*", "b*[x]:k", true}, {"b\\*\\[x\\]:*", "bz[x]:k", false},
	} {
		if got := globMatch([]byte(c.p), []byte(c.s)); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// TestACLRule pins the ACL SETUSER rule a tenant gets.
func TestACLRule(t *testing.T) {
	args := aclRule("redisrepl-gw-labB", "pw", 0, config.Tenant{Name: "labB", Namespaces: []string{"labB:", "b*[x]:"}, Read: []string{"shared:"}})
	var parts []string
	for _, a := range args {
		parts = append(parts, a.(string))
	}
	s := strings.Join(parts, " ")
	want := "SETUSER redisrepl-gw-labB reset on >pw ~labB:* ~b\\*\\[x\\]:* %R~shared:* " +
		"(~redisrepl:canary:labB:* +set +exists +del) (~redisrepl:canary:b\\*\\[x\\]:* +set +exists +del) " +
		"&__keyspace@0__:labB:* &__keyspace@0__:b\\*\\[x\\]:* &labB:* &b\\*\\[x\\]:* " +
		"&__keyspace@0__:redisrepl:canary:labB:* &__keyspace@0__:redisrepl:canary:b\\*\\[x\\]:* -@all +append "
	if !strings.HasPrefix(s, want) {
		t.Errorf("rule:\n%s\nwant prefix:\n%s", s, want)
	}
	for _, bad := range []string{"+config", "+flushall", "+flushdb", "+swapdb", "+move", "+acl", "+debug", "+shutdown",
		"+client", "+migrate", "+module", "+select", "+multi", "+exec", "+watch", "+keys", "+scan", "+randomkey",
		"+info", "+@", "+auth", "+hello", "+reset", "+restore", "+blpop", "+script", "+function", "+pubsub", "+dbsize"} {
		for _, p := range parts {
			if p == bad || strings.HasPrefix(p, bad) && bad == "+@" {
				t.Errorf("the rule grants %s", p)
			}
		}
	}
	if !strings.HasSuffix(s, "+memory|usage") {
		t.Errorf("rule ends %q", s[len(s)-40:])
	}
	if db3 := aclRule("u", "p", 3, config.Tenant{Namespaces: []string{"a:"}}); db3[len(db3)-1] != "+select|3" {
		t.Errorf("db 3: %v", db3[len(db3)-1])
	}
}

// TestScanScriptRecognised: the link's scan step (webdis.ScanScript), by
// EVALSHA and by EVAL, is the one script the gateway runs itself.
func TestScanScriptRecognised(t *testing.T) {
	for _, args := range [][][]byte{
		{[]byte("EVALSHA"), []byte(sha1Hex(webdis.ScanScript)), []byte("0"), []byte("0"), []byte("p*"), []byte("10")},
		{[]byte("eval"), []byte(webdis.ScanScript), []byte("0"), []byte("0"), []byte("p*"), []byte("10")},
	} {
		c, err := parseCommand(nil, webdis.AppendCommand(nil, args...), nil)
		if err != nil || !isScanScript(c.args) {
			t.Errorf("%.20q not recognised as the scan script: %v", args[0:2], err)
		}
	}
	other := webdis.AppendCommand(nil, []byte("EVAL"), []byte("return redis.call('SCAN', ARGV[1])"), []byte("0"), []byte("0"), []byte("p*"), []byte("10"))
	if c, err := parseCommand(nil, other, nil); err != nil || isScanScript(c.args) {
		t.Errorf("another script taken for the scan script (%v)", err)
	}
}

func TestCommandNameCut(t *testing.T) {
	c, _ := parseCommand(nil, []byte(strings.Repeat("x", 1000)+"/k"), nil)
	if n := c.name(); len(n) != 43 || !strings.HasSuffix(n, "...") {
		t.Errorf("name %q", n)
	}
	if k, why := (&tenant{g: &Gateway{disabled: map[string]bool{}}}).check(&c); k != 0 || why != reasonNotAllowed {
		t.Errorf("a long name: %v %q", k, why)
	}
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
