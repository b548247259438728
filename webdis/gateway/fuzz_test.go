package gateway

import (
	"bytes"
	"testing"

	"github.com/redisrepl/redisrepl/webdis"
)

// FuzzParseCommand: any path or body parses without panicking into a
// command with a name; and whatever arguments the link encodes come back
// as the same bytes, with the raw format.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"SET/k/v", "SET/a%2Fb/%00%ff+.raw", "0/GET/k.json", "/x", "%", "%2", "a?b", "SET/k/.raw", "....", "/./.raw"} {
		f.Add([]byte(s), []byte("k\x00/+%.raw"), []byte("v\n\xff"))
	}
	f.Fuzz(func(t *testing.T, uri, a1, a2 []byte) {
		in := append([]byte(nil), uri...)
		c, err := parseCommand(nil, in, nil)
		if err == nil && len(c.args) == 0 {
			t.Fatalf("%q: no arguments", uri)
		}
		put, err := parseCommand(nil, append([]byte(nil), uri...), a1)
		if len(a1) > 0 && (err != nil || !bytes.Equal(put.args[len(put.args)-1], a1)) {
			t.Fatalf("PUT %q body %q: last argument %q, %v", uri, a1, put.args[len(put.args)-1], err)
		}
		body := webdis.AppendCommand(nil, []byte("SET"), a1, a2)
		c, err = parseCommand(nil, body, nil)
		if err != nil || len(c.args) != 3 || string(c.args[0]) != "SET" ||
			!bytes.Equal(c.args[1], a1) || !bytes.Equal(c.args[2], a2) || c.format != fmtRaw {
			t.Fatalf("%q: %q format %d, %v", body, c.args, c.format, err)
		}
	})
}
