package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redisrepl/redisrepl/link/store"
	"github.com/redisrepl/redisrepl/webdis"
)

// carried subscribes c to pattern asking for values with header, and
// returns whether the gateway said it sends them, and the stream's
// messages.
func carried(t *testing.T, c *http.Client, url, pattern, header string) (bool, <-chan []any, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/", bytes.NewReader(webdis.AppendCommand(nil, []byte("PSUBSCRIBE"), []byte(pattern))))
	req.Header.Set(webdis.ValuesHeader, header)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("PSUBSCRIBE %s: HTTP %d", pattern, resp.StatusCode)
	}
	msgs := make(chan []any, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		r := webdis.NewReplyReader(resp.Body, 1<<20)
		for {
			v, err := r.Read()
			if err != nil {
				return
			}
			if m, ok := v.([]any); ok && len(m) >= 4 {
				if k, _ := m[0].([]byte); string(k) == "pmessage" {
					msgs <- m
				}
			}
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return resp.Header.Get(webdis.ValuesHeader) == "on", msgs, stop
}

func nextMessage(t *testing.T, msgs <-chan []any) []any {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message on the stream")
		return nil
	}
}

// A stream that asks for values with the link's read script gets each
// keyspace event with the key's state, as the script returns it for that
// key, read as the tenant; a script not loaded yet leaves the event
// without one, and a request naming anything but a link script gets no
// values at all.
func TestStreamCarriesTheLinksReadOfEachKey(t *testing.T) {
	e := newEnv(t, tenantsAB)
	a := e.client(t, "labA")
	hub := e.direct(t)
	var read *store.Script
	for _, s := range store.Scripts() {
		if strings.Contains(s.Src, "batch_bytes") && strings.Contains(s.Src, "' -2'") {
			read = s
		}
	}
	if read == nil {
		t.Fatal("the link's read script is not among store.Scripts()")
	}
	const pattern = "__keyspace@0__:labA:*"
	on, msgs, stop := carried(t, a, e.url, pattern, read.SHA+" 100 1000 1000")
	if !on {
		t.Fatal("the gateway did not say it sends values")
	}
	if _, err := hub.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Do("SET", "labA:k", "before"); err != nil {
		t.Fatal(err)
	}
	if m := nextMessage(t, msgs); len(m) != 4 {
		t.Errorf("an event whose script is not loaded came with %d fields, want 4", len(m))
	}
	if _, err := hub.Do("SCRIPT", "LOAD", read.Src); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Do("SET", "labA:k", "v/1\x00"); err != nil {
		t.Fatal(err)
	}
	m := nextMessage(t, msgs)
	if len(m) != 5 {
		t.Fatalf("an event came with %d fields, want 5 (its key's state)", len(m))
	}
	got, err := redis.Strings(m[4], nil)
	if err != nil || len(got) != 2 || got[0] != "string 0 1" || got[1] != "v/1\x00" {
		t.Errorf("state carried %q (%v), want the read script's [\"string 0 1\" \"v/1\\x00\"]", got, err)
	}
	// A value past the clamp of what an event carries is not read whole.
	if _, err := hub.Do("SET", "labA:big", strings.Repeat("x", 100<<10)); err != nil {
		t.Fatal(err)
	}
	m = nextMessage(t, msgs)
	if head, _ := redis.Strings(m[4], nil); len(head) != 1 || !strings.HasPrefix(head[0], "string 0 -1 ") {
		t.Errorf("a 100 KiB value carried as %d fields, want its header alone (Big)", len(head))
	}
	stop()

	for _, bad := range []string{"", "0123456789012345678901234567890123456789 1 1 1", read.SHA + " 1 1", read.SHA + " 1 -1 1"} {
		on, msgs, stop := carried(t, a, e.url, pattern, bad)
		if on {
			t.Errorf("values request %q: the gateway said it sends values", bad)
		}
		if _, err := hub.Do("SET", "labA:k", fmt.Sprint(bad)); err != nil {
			t.Fatal(err)
		}
		for {
			m := nextMessage(t, msgs)
			if len(m) != 4 {
				t.Errorf("values request %q: an event came with %d fields", bad, len(m))
			}
			if len(msgs) == 0 {
				break
			}
		}
		stop()
	}
}
