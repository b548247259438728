package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// TestDemoReplicatesOnBothHubs runs the demo as `make demo` does, built,
// with the redisrepl binary, on each hub: every key it writes must arrive,
// the namespaces must compare equal, and redisrepl must stop cleanly.
func TestDemoReplicatesOnBothHubs(t *testing.T) {
	webdistest.Require(t)
	dir := t.TempDir()
	bin, demo := filepath.Join(dir, "redisrepl"), filepath.Join(dir, "demo")
	for out, pkg := range map[string]string{bin: "../../cmd/redisrepl", demo: "."} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	for _, hub := range []string{"nginx", "gateway"} {
		t.Run(hub, func(t *testing.T) {
			out, err := exec.Command(demo, "-bin", bin, "-duration", "1s", "-hub", hub).CombinedOutput()
			if err != nil {
				t.Fatalf("demo -hub %s: %v\n%s", hub, err, out)
			}
			for _, want := range []string{
				"remote: lab1:sample:42 = {\"name\"=\"soil-7\" \"temp\"=\"21.5\" \"unit\"=\"C\"}",
				"remote: lab1:queue deleted",
				"check:  local and remote lab1:* are equal (7 keys",
				"summary: OK: 8 key writes",
				"redisrepl stopped by SIGTERM",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("demo -hub %s: no %q in its output:\n%s", hub, want, out)
				}
			}
		})
	}
}
