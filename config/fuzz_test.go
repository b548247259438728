package config

import (
	"errors"
	"testing"
)

// FuzzParse: any file content gives a config or an error, never a panic;
// every error is an *Error or an ErrorList naming the file.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"[[link]]\nname = \"a\"\nlocal = \":6379\"\nnamespace = \"a:\"\nremote = \"https://h/redis\"\ncert = \"c\"\nkey = \"k\"\nca = \"ca\"\n",
		"[service]\nlog_level = 3\n",
		"[defaults]\ndirection = \"both\"\n[[link]]\n[[link]]\nname=\"x\"\n",
		"[[link]\n", "x = \"\\u0000\"", "[[link]]\nlocal = \"redis://:p@h:99999/x\"\nresync_interval = \"-1s\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil {
			if cfg == nil || len(cfg.Links) == 0 {
				t.Fatalf("no error and no links")
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if e.File != "fuzz.toml" {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
