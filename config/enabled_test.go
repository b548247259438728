package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A link with enabled = false is validated but not run, and its certificate
// files are not read: a file installed before its certificates is valid.
func TestDisabledLinkIsCheckedButNotRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "redisrepl.toml")
	link := `[[link]]
enabled = false
name = "example"
local = "127.0.0.1:6379"
namespace = "labA:"
remote = "https://hub.example.org/redis"
cert = "/nonexistent/lab.pem"
key = "/nonexistent/lab.key"
ca = "/nonexistent/ca.pem"
`
	if err := os.WriteFile(path, []byte(link), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("a disabled link with missing files: %v", err)
	}
	if len(cfg.Links) != 0 {
		t.Fatalf("links run: %+v", cfg.Links)
	}

	bad := strings.Replace(link, `namespace = "labA:"`, `namespace = ""`, 1)
	bad = strings.Replace(bad, "enabled = false", `enabled = "no"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "enabled: must be true or false") || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a bad enabled and an empty namespace: %v", err)
	}

	on := strings.Replace(link, "enabled = false", "enabled = true", 1)
	if err := os.WriteFile(path, []byte(on), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "/nonexistent/lab.pem") {
		t.Fatalf("an enabled link with missing files: %v", err)
	}
}
