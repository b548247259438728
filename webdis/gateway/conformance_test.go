package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// conf is one request sent to nginx+Webdis and to the gateway. With diff
// empty, both replies (status, content type, body) must be byte for byte
// equal; otherwise diff says why they differ (the README lists these),
// and webdis and gw are the replies each must give.
type conf struct {
	method, path, body string
	diff               string
	webdis, gw         string // "STATUS BODY" expected when diff != ""
}

// conformance is the table: commands, formats, binary keys and values,
// errors. It runs in order; both hubs start empty, so they hold the same
// data at every step.
var conformance = []conf{
	// JSON shapes
	{method: "POST", body: "SET/k/v"},
	{method: "POST", body: "GET/k"},
	{method: "POST", body: "GET/missing"},
	{method: "POST", body: "get/k"},
	{method: "POST", body: "INCR/k"},
	{method: "POST", body: "SET/n/5"},
	{method: "POST", body: "INCR/n"},
	{method: "POST", body: "PING"},
	{method: "POST", body: "HSET/h/f/v/g/w"},
	{method: "POST", body: "HGETALL/h"},
	{method: "POST", body: "HGETALL/missing"},
	{method: "POST", body: "RPUSH/l/a/b/c"},
	{method: "POST", body: "LRANGE/l/0/-1"},
	{method: "POST", body: "SADD/s/x"},
	{method: "POST", body: "SMEMBERS/s"},
	{method: "POST", body: "ZADD/z/1/a/2.5/b"},
	{method: "POST", body: "ZRANGE/z/0/-1/WITHSCORES"},
	{method: "POST", body: "MGET/k/missing"},
	{method: "POST", body: "TYPE/h"},
	{method: "POST", body: "EXISTS/k/h/missing"},
	{method: "POST", body: "ECHO/%22quoted%22%20back%5Cslash%0Anl%09tab%01ctl%C3%A9"},
	{method: "POST", body: "NOSUCHCOMMAND/x", diff: "the gateway refuses commands outside its allow-list, as Webdis refuses a disabled one",
		webdis: "200 *", gw: "403 "},
	{method: "POST", body: "GET"},
	{method: "POST", body: "EVAL/%23!lua%20flags%3Dno-writes%0Areturn%201/0"},
	{method: "POST", body: "EVAL/%23!lua%20flags%3Dno-writes%0Areturn%20%7B1%2C'a'%7D/0"},
	{method: "POST", body: "EVAL/%23!lua%20flags%3Dno-writes%0Areturn%20redis.error_reply('MY%20err')/0"},
	{method: "POST", body: "PUBLISH/chan/hello"},
	// raw
	{method: "POST", body: "GET/k.raw"},
	{method: "POST", body: "GET/missing.raw"},
	{method: "POST", body: "SET/k2/v2.raw"},
	{method: "POST", body: "INCR/k.raw"},
	{method: "POST", body: "INCR/n.raw"},
	{method: "POST", body: "LRANGE/l/0/-1.raw"},
	{method: "POST", body: "HGETALL/h.raw"},
	{method: "POST", body: "ZRANGE/z/0/-1/WITHSCORES.raw"},
	{method: "POST", body: "EVAL/%23!lua%20flags%3Dno-writes%0Areturn%20%7B1%2C2%7D/0.raw"},
	{method: "POST", body: "NOSUCHCOMMAND.raw", diff: "allow-list", webdis: "200 -ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \r\n", gw: "403 "},
	// binary keys and values
	{method: "POST", body: "SET/b%00k%2Fe%2By%25%0A%FF/v%00a%2Fl%2Bu%25e%0A%FF%2E.raw"},
	{method: "POST", body: "GET/b%00k%2Fe%2By%25%0A%FF.raw"},
	{method: "POST", body: "STRLEN/b%00k%2Fe%2By%25%0A%FF"},
	{method: "POST", body: "SET/plus/a+b.raw"},
	{method: "POST", body: "GET/plus.raw"},
	{method: "POST", body: "SET/pct/100%25%2/.raw"},
	{method: "POST", body: "GET/pct"},
	{method: "POST", body: "ECHO/.raw"},
	{method: "POST", body: "ECHO/a.foo"},
	{method: "POST", body: "ECHO/hello.txt"},
	{method: "POST", body: "ECHO/a?b.raw"},
	{method: "POST", body: "0/GET/k"},
	{method: "PUT", path: "SET/pk", body: "put\x00body\xff/+%"},
	{method: "POST", body: "GET/pk.raw"},
	{method: "PUT", path: "SET/pk2.raw", body: "x"},
	// GET paths
	{method: "GET", path: "GET/k"},
	{method: "GET", path: "SET/g/hello%20world"},
	{method: "GET", path: "GET/g.raw"},
	{method: "GET", path: "SET/g2/a+b"},
	{method: "GET", path: "GET/g2"},
	{method: "GET", path: "PING.json"},
	// errors and statuses
	{method: "POST", body: ""},
	{method: "POST", body: "MULTI"},
	{method: "POST", body: "EXEC"},
	{method: "POST", body: "WATCH/k"},
	{method: "POST", body: "SELECT/1"},
	{method: "DELETE", path: "GET/k"},
	// documented differences
	{method: "POST", body: "MGET/k/missing.raw", diff: "Webdis drops a nil inside an array and keeps the count",
		webdis: "200 *2\r\n$1\r\nv\r\n", gw: "200 *2\r\n$1\r\nv\r\n$-1\r\n"},
	{method: "POST", body: "SCAN/0/MATCH/nomatch*/COUNT/1000", diff: "Webdis writes a nested array as null",
		webdis: `200 {"SCAN":["0",null]}`, gw: `200 {"SCAN":["0",[]]}`},
	{method: "POST", body: "SCAN/0/MATCH/nomatch*/COUNT/1000.raw", diff: "Webdis drops a nested array and keeps the count",
		webdis: "200 *2\r\n$1\r\n0\r\n", gw: "200 *2\r\n$1\r\n0\r\n*0\r\n"},
	{method: "POST", body: "EVAL/%23!lua%20flags%3Dno-writes%0Areturn%20%7B1%2C%7B2%2C3%7D%7D/0", diff: "nested arrays",
		webdis: `200 {"EVAL":[1,null]}`, gw: `200 {"EVAL":[1,[2,3]]}`},
	{method: "POST", body: "GET/b%00k%2Fe%2By%25%0A%FF", diff: "Webdis cuts a JSON string at a NUL byte and gives {} for invalid UTF-8",
		webdis: `200 {"GET":"v"}`, gw: `200 {"GET":"v\u0000a/l+u%e\n` + "\uFFFD" + `."}`},
	{method: "POST", body: "ECHO/a%00b", diff: "Webdis cuts a JSON string at a NUL byte",
		webdis: `200 {"ECHO":"a"}`, gw: `200 {"ECHO":"a\u0000b"}`},
	{method: "POST", body: "INCRBY/big/3000000000.raw", diff: "Webdis cuts integers beyond 32 bits in raw replies",
		webdis: "200 :30", gw: "200 :3000000000\r\n"},
	{method: "GET", path: "SET/a%2Fb/v", diff: "nginx decodes %2F in the path before Webdis splits it",
		webdis: `200 {"SET":[false,"ERR syntax error"]}`, gw: `200 {"SET":[true,"OK"]}`},
	{method: "GET", path: "GET/a%2Fb", diff: "(follows from the previous row)",
		webdis: `200 {"GET":[false,"ERR wrong number of arguments for 'get' command"]}`, gw: `200 {"GET":"v"}`},
	{method: "GET", path: "ECHO/a%00b.raw", diff: "nginx refuses %00 in a path",
		webdis: "400 *", gw: "200 $3\r\na\x00b\r\n"},
	{method: "POST", body: "INFO", diff: "INFO gives the server section only",
		webdis: "200 *", gw: "200 *"},
}

func TestConformance(t *testing.T) {
	w := webdistest.New(t, webdistest.Options{Log: t.Logf})
	g := webdistest.New(t, webdistest.Options{Log: t.Logf, Front: webdistest.FrontGateway})
	g.SetGatewayEval(true) // the rows' scripts are the tenant's own, read-only
	wc, err := w.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	gc, err := g.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.CloseIdleConnections()
	defer gc.CloseIdleConnections()
	for i, c := range conformance {
		name := fmt.Sprintf("#%d %s %q", i, c.method, c.path+c.body)
		ws, wct, wb := send(t, wc, w.URL, c)
		gs, gct, gb := send(t, gc, g.URL, c)
		if c.diff == "" {
			if ws != gs || wct != gct || wb != gb {
				t.Errorf("%s: Webdis %d %s %q, gateway %d %s %q", name, ws, wct, wb, gs, gct, gb)
			}
			continue
		}
		check := func(who string, status int, body, want string) {
			st, wantBody, _ := strings.Cut(want, " ")
			if fmt.Sprint(status) != st || !(wantBody == "*" || body == wantBody) {
				t.Errorf("%s (%s): %s %d %q, want %s %q", name, c.diff, who, status, body, st, wantBody)
			}
		}
		check("Webdis", ws, wb, c.webdis)
		check("gateway", gs, gb, c.gw)
	}
	t.Run("streams", func(t *testing.T) {
		for _, f := range []string{"", ".raw", ".json"} {
			for _, cmd := range []string{"PSUBSCRIBE/ch*", "SUBSCRIBE/ch1"} {
				wm := stream(t, wc, w, cmd+f)
				gm := stream(t, gc, g, cmd+f)
				if wm != gm {
					t.Errorf("%s%s: Webdis %q, gateway %q", cmd, f, wm, gm)
				}
			}
		}
	})
}

// send makes c's request and returns status, content type and body.
func send(t *testing.T, client *http.Client, base string, c conf) (int, string, string) {
	t.Helper()
	url := base + "/"
	var body io.Reader
	switch c.method {
	case "POST":
		body = strings.NewReader(c.body)
	case "PUT":
		url += c.path
		body = strings.NewReader(c.body)
	default:
		url += c.path
	}
	req, err := http.NewRequest(c.method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// stream subscribes with body, publishes two messages (one to a channel
// the subscription does not cover) once it is confirmed, and returns the
// status, content type and every byte streamed within 300 ms after.
func stream(t *testing.T, client *http.Client, hub *webdistest.Hub, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hub.URL+"/", strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, remote := hub.Conns(t)
	var mu sync.Mutex
	var got []byte
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			mu.Lock()
			got = append(got, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	webdistest.WaitFor(t, 3*time.Second, "the subscription's confirmation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	remote.Do("PUBLISH", "other", "no")
	remote.Do("PUBLISH", "ch1", "msg")
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return fmt.Sprintf("%d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
}
