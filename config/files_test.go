package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CheckFiles tells a file that cannot be read (a renewal in progress) from
// one that was read but does not load, and names the field and the path.
func TestCheckFiles(t *testing.T) {
	dir, path := setup(t)
	l := mustParse(t, path, minimal).Links[0]
	if err := l.CheckFiles(); err != nil {
		t.Fatalf("valid files: %v", err)
	}
	cert := filepath.Join(dir, "lab.pem")
	good, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, l Link, field, file string, unreadable bool, msg string) {
		t.Helper()
		err := l.CheckFiles()
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Fatalf("%s: %v, want a *FileError", what, err)
		}
		if fe.Field != field || fe.Path != file || fe.Unreadable != unreadable || !strings.Contains(err.Error(), msg) ||
			!strings.Contains(err.Error(), file) {
			t.Fatalf("%s: %+v (%v), want field %s, path %s, unreadable %v, message with %q", what, fe, err, field, file, unreadable, msg)
		}
	}

	os.Remove(cert)
	check("missing cert", l, "cert", cert, true, "no such file")
	writeFile(t, cert, string(good[:len(good)/2]))
	check("half-written cert", l, "cert", cert, false, "does not load")
	writeFile(t, cert, string(good))

	other := l
	other.Key = filepath.Join(dir, "other.key")
	check("key of another certificate", other, "cert", cert, false, "not a certificate and key pair")
	other = l
	other.CA = filepath.Join(dir, "empty-ca.pem")
	check("CA file without a certificate", other, "ca", other.CA, false, "no PEM certificate")
	other = l
	other.LocalTLS, other.LocalCA = true, filepath.Join(dir, "gone-ca.pem")
	check("missing local_ca", other, "local_ca", other.LocalCA, true, "no such file")
}

// IsFileError holds of a Parse error only about certificate, key or CA
// files, in a link or in [defaults].
func TestIsFileError(t *testing.T) {
	dir, path := setup(t)
	os.Remove(filepath.Join(dir, "lab.pem"))
	_, err := Parse(path, []byte(minimal))
	if err == nil || !IsFileError(err) {
		t.Fatalf("missing cert in [defaults]: %v: IsFileError false", err)
	}
	inLink := strings.Replace(minimal, `namespace = "a:"`, "namespace = \"a:\"\nca = \"empty-ca.pem\"\ncert = \"labB.pem\"\nkey = \"labB.key\"", 1)
	if _, err = Parse(path, []byte(inLink)); err == nil || !IsFileError(err) {
		t.Fatalf("bad ca in the link: %v: IsFileError false", err)
	}
	both := strings.Replace(minimal, `namespace = "a:"`, `namespace = 3`, 1)
	if _, err = Parse(path, []byte(both)); err == nil || IsFileError(err) {
		t.Fatalf("missing cert and a bad namespace: %v: IsFileError true", err)
	}
	for _, err := range []error{nil, errors.New("open /etc/redisrepl.toml: permission denied"), &Error{Field: "namespace", Msg: "must not be empty"}} {
		if IsFileError(err) {
			t.Errorf("IsFileError(%v) = true", err)
		}
	}
}
