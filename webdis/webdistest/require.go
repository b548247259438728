package webdistest

import (
	"fmt"
	"os"
	"testing"
)

// RequireProgram returns the path of a program a test needs besides the
// hub's (chromium, prometheus, dpkg...): it skips t when the program is
// missing, or fails it with CI=true, naming the Debian package to install.
func RequireProgram(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := FindBinary(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed; install with: apt-get install -y %s", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
