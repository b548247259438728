package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch watches the directory of path with fsnotify (editors replace a file by
// renaming another over it) and, once events about the file have been quiet for
// debounce, reads it again. When its content differs from the last seen (a hash
// of the bytes is compared, so a touch or a rewrite with the same bytes does
// not count), it calls onChange with the newly parsed config or the error.
// A deleted file is reported as an error (errors.Is(err, fs.ErrNotExist)) and
// its re-creation as a change. The content when Watch starts is the reference:
// load the file before calling Watch. onChange runs on Watch's goroutine.
//
// Watch returns nil when ctx is done, or an error if the watch cannot be set up.
func Watch(ctx context.Context, path string, debounce time.Duration, onChange func(*Config, error)) error {
	return watch(ctx, path, debounce, onChange, watchHooks{})
}

// watchHooks let tests wait for the watcher instead of sleeping.
type watchHooks struct {
	ready   func()           // the directory is watched
	checked func(fired bool) // the file was read again after a debounce
}

func watch(ctx context.Context, path string, debounce time.Duration, onChange func(*Config, error), h watchHooks) error {
	return watchFile(ctx, path, debounce, Parse, onChange, h)
}

// watchFile is Watch for any file format: parse turns the new bytes into a T.
func watchFile[T any](ctx context.Context, path string, debounce time.Duration,
	parse func(string, []byte) (T, error), onChange func(T, error), h watchHooks) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	path = filepath.Clean(path)
	if err := w.Add(filepath.Dir(path)); err != nil {
		return err
	}
	last, _, _ := readState(path)
	if h.ready != nil {
		h.ready()
	}
	base := filepath.Base(path)
	timer := time.NewTimer(debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// "..data" and the like: Kubernetes swaps a symlinked directory.
			if name := filepath.Base(ev.Name); name == base || strings.HasPrefix(name, "..") {
				timer.Reset(debounce)
			}
		case _, ok := <-w.Errors: // e.g. a queue overflow: events may be lost, look again
			if !ok {
				return nil
			}
			timer.Reset(debounce)
		case <-timer.C:
			state, data, err := readState(path)
			fired := state != last
			if fired {
				last = state
				if err != nil {
					var zero T
					onChange(zero, err)
				} else {
					onChange(parse(path, data))
				}
			}
			if h.checked != nil {
				h.checked(fired)
			}
		}
	}
}

// readState reads the file and sums up its state: a hash of its bytes, or the
// error reading it.
func readState(path string) (state string, data []byte, err error) {
	data, err = os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "absent", nil, err
	case err != nil:
		return "error: " + err.Error(), nil, err
	}
	sum := sha256.Sum256(data)
	return string(sum[:]), data, nil
}
