package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/webdis/pki"
)

// runCerts calls certsCmd and returns its exit status and output.
func runCerts(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = certsCmd(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", filepath.Base(path), got, want)
	}
}

func TestCertsAllInOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // created by the command
	code, out, errOut := runCerts(t, "-dir", dir, "-ca", "-server", "hub.example.org,10.0.0.5", "-client", "labA,labB", "-days", "30")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("output:\n%s", out)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory not created 0700: %v %v", fi, err)
	}
	files := map[string]os.FileMode{
		"ca.pem": 0o644, "ca.key": 0o600, "server.pem": 0o644, "server.key": 0o600,
		"labA.pem": 0o644, "labA.key": 0o600, "labB.pem": 0o644, "labB.key": 0o600,
	}
	for name, mode := range files {
		checkMode(t, filepath.Join(dir, name), mode)
		if !strings.Contains(out, filepath.Join(dir, name)) {
			t.Errorf("output does not name %s", name)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(files) {
		t.Errorf("%d files in %s, want %d", len(ents), dir, len(files))
	}
	for _, want := range []string{"ssl_client_certificate", "ssl_certificate ", "ssl_certificate_key", `cert = "/etc/redisrepl/labA.pem"`, `key  = "/etc/redisrepl/labB.key"`, "ca.key"} {
		if !strings.Contains(out, want) {
			t.Errorf("next steps lack %q", want)
		}
	}

	roots := x509.NewCertPool()
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	roots.AddCert(ca)
	if !ca.IsCA {
		t.Error("ca.pem is not a CA")
	}
	srv := readCert(t, filepath.Join(dir, "server.pem"))
	for _, host := range []string{"hub.example.org", "10.0.0.5"} {
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server.pem for %s: %v", host, err)
		}
	}
	if d := time.Until(srv.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("-days 30: server certificate ends in %v", d)
	}
	for _, lab := range []string{"labA", "labB"} {
		c := readCert(t, filepath.Join(dir, lab+".pem"))
		if c.Subject.CommonName != lab {
			t.Errorf("%s.pem: CN %q", lab, c.Subject.CommonName)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s.pem: %v", lab, err)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, lab+".pem"), filepath.Join(dir, lab+".key")); err != nil {
			t.Errorf("%s: certificate and key do not match: %v", lab, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")); err != nil {
		t.Errorf("server: certificate and key do not match: %v", err)
	}
}

func TestCertsStepByStep(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := runCerts(t, "-dir", dir, "-ca", "-ca-name", "Example Labs CA"); code != 0 {
		t.Fatalf("-ca: exit %d: %s%s", code, out, errOut)
	} else if !strings.Contains(out, "-server hub.example.org -client") {
		t.Errorf("after -ca alone the next steps do not say what to issue:\n%s", out)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if code, out, errOut := runCerts(t, "-dir", dir, "-server", "hub.example.org", "-server", "127.0.0.1"); code != 0 {
		t.Fatalf("-server: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := runCerts(t, "-dir", dir, "-client", "labC"); code != 0 {
		t.Fatalf("-client: exit %d: %s%s", code, out, errOut)
	} else if strings.Contains(out, "ssl_certificate_key") {
		t.Errorf("client-only run tells about the server files:\n%s", out)
	}
	// The CA was loaded, not replaced, and signed both.
	if now, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(now, caPEM) {
		t.Fatal("ca.pem changed")
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cert.Subject.CommonName != "Example Labs CA" {
		t.Errorf("-ca-name: CN %q", ca.Cert.Subject.CommonName)
	}
	if _, err := readCert(t, filepath.Join(dir, "server.pem")).Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: ca.Pool()}); err != nil {
		t.Errorf("server.pem (repeated -server): %v", err)
	}
	if _, err := readCert(t, filepath.Join(dir, "labC.pem")).Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("labC.pem: %v", err)
	}
	checkMode(t, filepath.Join(dir, "labC.key"), 0o600)
}

func TestCertsRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCerts(t, "-dir", dir, "-ca", "-client", "labA"); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, errOut)
	}
	before := map[string][]byte{}
	for _, n := range []string{"ca.pem", "ca.key", "labA.pem", "labA.key"} {
		before[n], _ = os.ReadFile(filepath.Join(dir, n))
	}

	// Same again: refused, naming the files, and nothing changes.
	code, out, errOut := runCerts(t, "-dir", dir, "-ca", "-client", "labA")
	if code != 1 {
		t.Fatalf("second run without -force: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, n := range []string{"ca.pem", "ca.key", "labA.pem", "labA.key"} {
		if !strings.Contains(errOut, filepath.Join(dir, n)) {
			t.Errorf("error does not name %s: %s", n, errOut)
		}
	}
	if !strings.Contains(errOut, "-force") {
		t.Errorf("error does not mention -force: %s", errOut)
	}
	// A combined call where only one output exists writes nothing at all.
	if code, _, errOut = runCerts(t, "-dir", dir, "-client", "labB,labA"); code != 1 {
		t.Fatalf("-client labB,labA with labA existing: exit %d, want 1: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "labB.pem")); err == nil {
		t.Error("labB.pem written although the run was refused")
	}
	for n, data := range before {
		if now, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(now, data) {
			t.Errorf("%s changed by a refused run", n)
		}
	}

	// -force replaces the client certificate, with the right modes.
	os.Chmod(filepath.Join(dir, "labA.key"), 0o644)
	if code, out, errOut = runCerts(t, "-dir", dir, "-client", "labA", "-force"); code != 0 {
		t.Fatalf("-force: exit %d: %s%s", code, out, errOut)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "labA.key")); bytes.Equal(now, before["labA.key"]) {
		t.Error("-force did not replace labA.key")
	}
	checkMode(t, filepath.Join(dir, "labA.key"), 0o600)
	if now, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(now, before["ca.pem"]) {
		t.Error("-client -force touched the CA")
	}
	// -ca -force replaces the CA and warns that older certificates die.
	if code, out, _ = runCerts(t, "-dir", dir, "-ca", "-force"); code != 0 || !strings.Contains(out, "reissue") {
		t.Errorf("-ca -force: exit %d, output:\n%s", code, out)
	}
}

func TestCertsWithoutCA(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCerts(t, "-dir", dir, "-server", "hub.example.org")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"no CA in " + dir, filepath.Join(dir, "ca.pem"), "-ca"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error lacks %q: %s", want, errOut)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written without a CA: %v", ents)
	}
	// A missing directory is not created for nothing.
	missing := filepath.Join(dir, "nope")
	if code, _, _ := runCerts(t, "-dir", missing, "-client", "labA"); code != 1 {
		t.Errorf("-client into a missing dir: exit %d, want 1", code)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("directory created although nothing could be issued")
	}

	// The certificate without its key: issuing is impossible, and says why.
	if code, _, errOut := runCerts(t, "-dir", dir, "-ca"); code != 0 {
		t.Fatal(errOut)
	}
	os.Remove(filepath.Join(dir, "ca.key"))
	code, _, errOut = runCerts(t, "-dir", dir, "-client", "labA")
	if code != 1 || !strings.Contains(errOut, "ca.key") {
		t.Errorf("CA key missing: exit %d: %s", code, errOut)
	}
	// Something else than a CA in ca.pem.
	os.WriteFile(filepath.Join(dir, "ca.key"), []byte("garbage"), 0o600)
	code, _, errOut = runCerts(t, "-dir", dir, "-client", "labA")
	if code != 1 || !strings.Contains(errOut, "ca.key") {
		t.Errorf("CA key garbage: exit %d: %s", code, errOut)
	}
}

func TestCertsUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"-dir", dir},
		{"-ca"},
		{"-dir", dir, "-ca", "extra"},
		{"-dir", dir, "-ca", "-days", "0"},
		{"-dir", dir, "-ca", "-ca-days", "-1"},
		{"-dir", dir, "-ca", "-days", "99999999"},
		{"-dir", dir, "-client", "lab", "-ca-name", "X"},
		{"-dir", dir, "-ca", "-server", ","},
		{"-dir", dir, "-ca", "-server", "https://hub.example.org"},
		{"-dir", dir, "-ca", "-server", "hub.example.org:443"},
		{"-dir", dir, "-ca", "-client", "../evil"},
		{"-dir", dir, "-ca", "-client", "a/b"},
		{"-dir", dir, "-ca", "-client", "ca"},
		{"-dir", dir, "-ca", "-client", "Server"},
		{"-dir", dir, "-ca", "-client", ".hidden"},
		{"-dir", dir, "-ca", "-client", "labA,labA"},
		{"-dir", dir, "-nosuchflag"},
	} {
		code, out, errOut := runCerts(t, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s%s", args, code, out, errOut)
		} else if errOut == "" {
			t.Errorf("%q: no message", args)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("bad usage wrote files: %v", ents)
	}
	code, out, errOut := runCerts(t, "-h")
	if code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	for _, want := range []string{"-dir", "-ca", "-server", "-client", "-force", "-days", "ssl_client_certificate", "0600"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("-h does not explain %q", want)
		}
	}
}
