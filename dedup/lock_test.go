package dedup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A sync state locked once is refused to a second holder, with an error
// naming the state file and the holder's pid, and free again once unlocked.
func TestStateLockRefusesSecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lab1.state")
	first, err := LockState(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockState(path)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second lock: %v, want a *HeldError", err)
	}
	if held.PID != os.Getpid() || held.State != path || !strings.Contains(err.Error(), path) {
		t.Fatalf("held by pid %d of %q (%v), want pid %d of %q", held.PID, held.State, err, os.Getpid(), path)
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := LockState(path)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again.Unlock()
}
