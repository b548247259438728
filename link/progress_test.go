package link

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestProgressBar(t *testing.T) {
	var bar, logs bytes.Buffer
	start := time.Now().Add(-2 * time.Second)
	p := progress{log: zerolog.New(&logs), bar: &bar, name: "labA", start: start, last: start.Add(-time.Minute), expected: 1000}
	p.scanned, p.differ = 500, 7
	p.report()
	out := bar.String()
	for _, want := range []string{"\rlabA resync [", " 50% ", "500 keys compared, 7 differing", "ETA "} {
		if !strings.Contains(out, want) {
			t.Errorf("bar %q lacks %q", out, want)
		}
	}
	if !strings.Contains(logs.String(), `"percent":50`) || !strings.Contains(logs.String(), `"keys_differing":7`) {
		t.Errorf("progress log: %s", logs.String())
	}
	p.scanned = 1000
	p.finish()
	if !strings.HasSuffix(bar.String(), "\n") || !strings.Contains(bar.String(), "100%") {
		t.Errorf("final bar: %q", bar.String())
	}
}
