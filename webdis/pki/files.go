package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ExistsError is a file that WriteFiles or WriteFile refused to overwrite.
// errors.Is(err, fs.ErrExist) holds for it.
type ExistsError struct {
	Path string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("pki: %s already exists (not overwritten)", e.Path)
}

// Is makes errors.Is(err, fs.ErrExist) true.
func (e *ExistsError) Is(target error) bool { return target == fs.ErrExist }

// WriteFiles writes a certificate (mode 0644) and its private key (mode
// 0600). Unless overwrite is set, it writes nothing if either file exists,
// and the error (one *ExistsError per existing file) names them.
// With overwrite, each file is replaced atomically (a new file renamed over
// the old one), so that it has the mode above whatever the old one had.
func WriteFiles(certFile string, certPEM []byte, keyFile string, keyPEM []byte, overwrite bool) error {
	if certFile == keyFile {
		return fmt.Errorf("pki: certificate and key would both be written to %s", certFile)
	}
	if !overwrite {
		var errs []error
		for _, p := range []string{certFile, keyFile} {
			if _, err := os.Lstat(p); err == nil {
				errs = append(errs, &ExistsError{Path: p})
			} else if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("pki: %w", err))
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	if err := WriteFile(certFile, certPEM, CertMode, overwrite); err != nil {
		return err
	}
	if err := WriteFile(keyFile, keyPEM, KeyMode, overwrite); err != nil {
		if !overwrite {
			_ = os.Remove(certFile) // leave no certificate without its key
		}
		return err
	}
	return nil
}

// WriteFile writes data to path with exactly mode perm (whatever the
// umask). Without overwrite an existing path is an *ExistsError; the check
// and the creation are one step (O_EXCL), so two writers cannot both win.
// With overwrite the file is written next to path and renamed over it.
func WriteFile(path string, data []byte, perm os.FileMode, overwrite bool) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("pki: %s is a directory", path)
	}
	if !overwrite {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			return &ExistsError{Path: path}
		}
		if err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		if err := fill(f, data, perm); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("pki: write %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmp := f.Name()
	if err := fill(f, data, perm); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// fill sets f's mode, writes data, syncs and closes f.
func fill(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm) // the umask may have removed bits from OpenFile's mode
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
