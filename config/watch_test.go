package config

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type change struct {
	cfg *Config
	err error
}

// watcher runs watch on path until the test ends. Every onChange call arrives
// on changes; every look at the file after a debounce on checks.
type watcher struct {
	changes chan change
	checks  chan bool
}

func startWatch(t *testing.T, path string, debounce time.Duration) *watcher {
	t.Helper()
	w := &watcher{changes: make(chan change, 10), checks: make(chan bool, 10)}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watch(ctx, path, debounce, func(c *Config, err error) { w.changes <- change{c, err} },
			watchHooks{ready: func() { close(ready) }, checked: func(fired bool) { w.checks <- fired }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned %v", err)
	}
	return w
}

const timeout = 5 * time.Second

// next waits for the next onChange call.
func (w *watcher) next(t *testing.T) change {
	t.Helper()
	select {
	case c := <-w.changes:
		<-w.checks
		return c
	case <-time.After(timeout):
		t.Fatal("no onChange call")
	}
	return change{}
}

// quiet waits for the watcher to look at the file and checks it did not call onChange.
func (w *watcher) quiet(t *testing.T) {
	t.Helper()
	select {
	case fired := <-w.checks:
		if fired {
			c := <-w.changes
			t.Fatalf("onChange called: %v %v", c.cfg, c.err)
		}
	case <-time.After(timeout):
		t.Fatal("the watcher did not look at the file")
	}
}

func namespaceOf(t *testing.T, c change) string {
	t.Helper()
	if c.err != nil {
		t.Fatalf("onChange error: %v", c.err)
	}
	return c.cfg.Links[0].Namespace
}

func withNamespace(ns string) string {
	return strings.Replace(minimal, `namespace = "a:"`, `namespace = "`+ns+`"`, 1)
}

func TestWatchWrite(t *testing.T) {
	_, path := setup(t)
	writeFile(t, path, minimal)
	w := startWatch(t, path, 20*time.Millisecond)

	writeFile(t, path, withNamespace("b:"))
	if ns := namespaceOf(t, w.next(t)); ns != "b:" {
		t.Errorf("namespace %q", ns)
	}

	// Same bytes again, and a touch: no call.
	writeFile(t, path, withNamespace("b:"))
	w.quiet(t)
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	w.quiet(t)

	// A broken file is reported as an error, and its fix as a change.
	writeFile(t, path, minimal+"workers = 0\n")
	c := w.next(t)
	var e *Error
	if c.cfg != nil || !errors.As(c.err, &e) || e.Field != "workers" || e.Line != 11 {
		t.Fatalf("got %v, %v", c.cfg, c.err)
	}
	writeFile(t, path, minimal)
	if ns := namespaceOf(t, w.next(t)); ns != "a:" {
		t.Errorf("namespace %q", ns)
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir, path := setup(t)
	writeFile(t, path, minimal)
	w := startWatch(t, path, 20*time.Millisecond)
	writeFile(t, filepath.Join(dir, "other.toml"), "x")
	writeFile(t, filepath.Join(dir, "redisrepl.toml.bak"), withNamespace("x:"))
	writeFile(t, path, minimal) // so that the watcher looks: it must not call
	w.quiet(t)
	writeFile(t, path, withNamespace("c:"))
	if ns := namespaceOf(t, w.next(t)); ns != "c:" {
		t.Errorf("namespace %q", ns)
	}
}

func TestWatchRenameReplace(t *testing.T) {
	dir, path := setup(t)
	writeFile(t, path, minimal)
	w := startWatch(t, path, 20*time.Millisecond)
	tmp := filepath.Join(dir, ".redisrepl.toml.swp")
	writeFile(t, tmp, withNamespace("d:"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if ns := namespaceOf(t, w.next(t)); ns != "d:" {
		t.Errorf("namespace %q", ns)
	}
}

func TestWatchDeleteRecreate(t *testing.T) {
	_, path := setup(t)
	writeFile(t, path, minimal)
	w := startWatch(t, path, 20*time.Millisecond)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if c := w.next(t); c.cfg != nil || !errors.Is(c.err, fs.ErrNotExist) {
		t.Fatalf("got %v, %v", c.cfg, c.err)
	}
	writeFile(t, path, minimal) // the same content as before the delete
	if ns := namespaceOf(t, w.next(t)); ns != "a:" {
		t.Errorf("namespace %q", ns)
	}
}

func TestWatchDebounce(t *testing.T) {
	_, path := setup(t)
	writeFile(t, path, minimal)
	w := startWatch(t, path, 300*time.Millisecond)
	for _, ns := range []string{"1:", "2:", "3:", "4:", "5:"} {
		writeFile(t, path, withNamespace(ns))
	}
	if ns := namespaceOf(t, w.next(t)); ns != "5:" {
		t.Errorf("namespace %q", ns)
	}
	select {
	case c := <-w.changes:
		t.Fatalf("burst gave a second call: %v %v", c.cfg, c.err)
	case <-w.checks:
		t.Fatal("burst gave a second look at the file")
	default:
	}
}

func TestWatchStops(t *testing.T) {
	_, path := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Watch(ctx, path, time.Millisecond, func(*Config, error) { t.Error("called") }); err != nil {
		t.Errorf("Watch: %v", err)
	}
	if err := Watch(context.Background(), filepath.Join(path, "no", "dir", "x.toml"), time.Millisecond, nil); err == nil {
		t.Error("Watch of a missing directory returned nil")
	}
}
