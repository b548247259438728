package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// FileError is a certificate, key or CA file of a link that cannot be used
// now: unreadable (absent, e.g. while a renewal tool replaces it, or not
// permitted), or read but not loadable.
type FileError struct {
	Field      string // cert, key, ca, local_ca, local_cert or local_key
	Path       string
	Unreadable bool // the file could not be read; false: it was read but does not load
	Err        error
}

func (e *FileError) Error() string {
	if e.Unreadable {
		err := e.Err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said already
		}
		return fmt.Sprintf("%s %s cannot be read: %v", e.Field, e.Path, err)
	}
	return fmt.Sprintf("%s %s does not load: %v", e.Field, e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// CheckFiles reads the link's certificate, key and CA files (the hub's and
// the local Redis's) and checks that they load, as Parse does. It returns
// nil, or a *FileError for the first file at fault.
func (l Link) CheckFiles() error {
	var first error
	check := pemCheck{
		read: func(field, path string) []byte {
			if first != nil {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				first = &FileError{Field: field, Path: path, Unreadable: true, Err: err}
				return nil
			}
			return b
		},
		badPair: func(certField, keyField, certPath, keyPath string, err error) {
			first = &FileError{Field: certField, Path: certPath,
				Err: fmt.Errorf("with %s %s, not a certificate and key pair: %w", keyField, keyPath, err)}
		},
		badCA: func(field, path string, err error) {
			first = &FileError{Field: field, Path: path, Err: err}
		},
	}
	check.pair("cert", "key", l.Cert, l.Key)
	check.ca("ca", l.CA)
	check.pair("local_cert", "local_key", l.LocalCert, l.LocalKey)
	check.ca("local_ca", l.LocalCA)
	return first
}

// fileFields are the fields that name a certificate, key or CA file.
var fileFields = []string{"cert", "key", "ca", "local_ca", "local_cert", "local_key"}

// IsFileError says whether err, an error of Load or Parse, is only about
// certificate, key or CA fields (in a [[link]] or in [defaults]): loading
// the same file again may succeed once those files are back or fixed.
func IsFileError(err error) bool {
	var list ErrorList
	var one *Error
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = ErrorList{one}
	default:
		return false
	}
	for _, e := range list {
		if !slices.Contains(fileFields, strings.TrimPrefix(e.Field, "defaults.")) {
			return false
		}
	}
	return len(list) > 0
}
