package examples_test

// The .deb of "make deb" (examples/deb/), installed, upgraded, removed and
// purged with dpkg on this machine: root only (CI runs as root).

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/webdistest"
)

// makeDeb runs "make deb" for version into dir and returns the package.
func makeDeb(t *testing.T, version, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-C", "..", "deb", "DEB_VERSION="+version, "DEB_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "redisrepl_"+version+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v in %s:\n%s", debs, dir, out)
	}
	return debs[0]
}

// dpkg runs dpkg with args, waiting while another dpkg or apt holds its lock.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	for end := time.Now().Add(3 * time.Minute); ; {
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return string(out)
		}
		if strings.Contains(string(out), "lock") && time.Now().Before(end) {
			time.Sleep(2 * time.Second)
			continue
		}
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func installedStatus(t *testing.T) string {
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "redisrepl").Output()
	return strings.Join(strings.Fields(string(out)), " ") // "ii 1.2.3", "rc 1.2.3"
}

func mustExist(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err != nil || u.Username != owner {
		t.Errorf("%s: owner uid %d, want %s", path, st.Uid, owner)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err != nil || g.Name != group {
		t.Errorf("%s: group gid %d, want %s", path, st.Gid, group)
	}
}

func mustBeGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// debianVersion is what Debian accepts as a version without a revision.
var debianVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// debVersion is DEB_VERSION as the Makefile computes it in dir.
func debVersion(t *testing.T, makefile, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-s", "-f", makefile, "--eval=print-deb-version: ; @echo $(DEB_VERSION)", "print-deb-version")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// "make deb" takes its version from git describe, made Debian-valid: a
// release tag as it is, commits after it and uncommitted changes after a
// "+", and no tag at all before any release ("~").
func TestDebVersionFromGitDescribe(t *testing.T) {
	git := webdistest.RequireProgram(t, "git", "git")
	makefile, err := filepath.Abs("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func(msg string) string {
		os.WriteFile(filepath.Join(dir, "f"), []byte(msg), 0o644)
		run("add", "f")
		run("commit", "-q", "-m", msg)
		return run("rev-parse", "--short", "HEAD")
	}
	run("init", "-q")
	commit("one")
	h2 := commit("two")
	for _, c := range []struct{ setup, want string }{
		{"", "0.0~git2.g" + h2},
		{"tag v1.2.3 HEAD~1", "1.2.3+1.g" + h2},
		{"tag v1.2.4", "1.2.4"},
		{"dirty", "1.2.4+dirty"},
	} {
		switch {
		case c.setup == "dirty":
			os.WriteFile(filepath.Join(dir, "f"), []byte("changed"), 0o644)
		case c.setup != "":
			run(strings.Fields(c.setup)...)
		}
		got := debVersion(t, makefile, dir)
		if got != c.want {
			t.Errorf("after %q: DEB_VERSION %q, want %q", c.setup, got, c.want)
		}
		if !debianVersion.MatchString(got) {
			t.Errorf("DEB_VERSION %q is not a Debian version", got)
		}
	}
}

// The package installs the binary, the units, both configuration files as
// conffiles (valid as installed), the redisrepl user and its state
// directory; an upgrade keeps an edited configuration and the state; removal
// keeps configuration and state, and purge removes them. Without systemd
// (a container) the scripts do not fail.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the .deb test installs a package: CI runs as root")
		}
		t.Skip("installing a package needs root")
	}
	for _, p := range []string{"dpkg", "dpkg-deb", "adduser"} {
		webdistest.RequireProgram(t, p, p)
	}
	if s := installedStatus(t); s != "" && !strings.HasPrefix(s, "un") {
		t.Fatalf("a redisrepl package is already installed here (%s): the test would replace it", s)
	}
	// A state directory already here (a build from source, another test's
	// link) is put aside and back: purge would remove it.
	const stateDir = "/var/lib/redisrepl"
	aside := stateDir + ".before-deb-test"
	if _, err := os.Stat(stateDir); err == nil {
		if err := os.Rename(stateDir, aside); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if s := installedStatus(t); s != "" && !strings.HasPrefix(s, "un") {
			exec.Command("dpkg", "--purge", "redisrepl").Run()
		}
		if _, err := os.Stat(aside); err == nil {
			os.RemoveAll(stateDir)
			os.Rename(aside, stateDir)
		}
	})
	dir := t.TempDir()
	v1, v2 := "0.0~test1", "0.0~test2"
	deb1, deb2 := makeDeb(t, v1, filepath.Join(dir, "1")), makeDeb(t, v2, filepath.Join(dir, "2"))

	field := func(deb, name string) string {
		out, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if field(deb1, "Package") != "redisrepl" || field(deb1, "Version") != v1 || !strings.Contains(field(deb1, "Depends"), "adduser") {
		t.Errorf("control: package %q version %q depends %q", field(deb1, "Package"), field(deb1, "Version"), field(deb1, "Depends"))
	}
	if !strings.HasSuffix(deb1, "_"+field(deb1, "Architecture")+".deb") {
		t.Errorf("%s is not named after its architecture %s", deb1, field(deb1, "Architecture"))
	}

	// lintian's errors and warnings are fixed, or overridden with a reason
	// in examples/deb/lintian-overrides.
	lintian := webdistest.RequireProgram(t, "lintian", "lintian")
	out, err := exec.Command(lintian, "--fail-on", "error,warning", deb2).CombinedOutput()
	if err != nil {
		t.Errorf("lintian %s: %v\n%s", deb2, err, out)
	}
	t.Logf("lintian: %s", out)

	dpkg(t, "-i", deb1)
	if s := installedStatus(t); s != "ii "+v1 {
		t.Fatalf("after dpkg -i: %q", s)
	}
	if out, err := exec.Command("/usr/bin/redisrepl", "version").Output(); err != nil || strings.TrimSpace(string(out)) != "redisrepl "+v1 {
		t.Errorf("/usr/bin/redisrepl version: %q %v", out, err)
	}
	u, err := user.Lookup("redisrepl")
	if err != nil {
		t.Fatalf("no redisrepl user: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || u.HomeDir != "/var/lib/redisrepl" {
		t.Errorf("redisrepl user: uid %s home %s, want a system user at home in /var/lib/redisrepl", u.Uid, u.HomeDir)
	}
	if _, err := user.LookupGroup("redisrepl"); err != nil {
		t.Errorf("no redisrepl group: %v", err)
	}
	mustExist(t, "/var/lib/redisrepl", 0o700, "redisrepl", "redisrepl")
	mustExist(t, "/etc/redisrepl", 0o750, "root", "redisrepl")
	mustExist(t, "/etc/redisrepl.toml", 0o640, "root", "redisrepl")
	mustExist(t, "/etc/redisrepl-gateway.toml", 0o640, "root", "redisrepl")
	conffiles, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "redisrepl").Output()
	for _, f := range []string{"/etc/redisrepl.toml", "/etc/redisrepl-gateway.toml"} {
		if !strings.Contains(string(conffiles), " "+f+" ") {
			t.Errorf("%s is not a conffile: %q", f, conffiles)
		}
	}
	for _, unit := range []string{"redisrepl", "redisrepl-gateway"} {
		b, err := os.ReadFile("/lib/systemd/system/" + unit + ".service")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ExecStart=/usr/bin/redisrepl ", "User=redisrepl", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s.service lacks %q", unit, want)
			}
		}
		if strings.Contains(string(b), "/usr/local/bin") {
			t.Errorf("%s.service still names /usr/local/bin", unit)
		}
		if sa, err := exec.LookPath("systemd-analyze"); err == nil {
			if out, err := exec.Command(sa, "verify", "/lib/systemd/system/"+unit+".service").CombinedOutput(); err != nil {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
		}
	}

	// Valid as installed: the service's file runs no link (its example is
	// switched off); the gateway's is valid once the certificates its
	// comment makes are there.
	cfg, err := config.Load("/etc/redisrepl.toml")
	if err != nil {
		t.Fatalf("/etc/redisrepl.toml as installed: %v", err)
	}
	if len(cfg.Links) != 0 || cfg.Service.MetricsAddr == "" {
		t.Errorf("/etc/redisrepl.toml as installed: %d links, metrics_addr %q", len(cfg.Links), cfg.Service.MetricsAddr)
	}
	if _, err := config.LoadGateway("/etc/redisrepl-gateway.toml"); err == nil || !strings.Contains(err.Error(), "/etc/redisrepl/pki/") {
		t.Errorf("/etc/redisrepl-gateway.toml before its certificates: %v", err)
	}
	if out, err := exec.Command("/usr/bin/redisrepl", "certs", "-dir", "/etc/redisrepl/pki", "-ca", "-server", "hub.example.org", "-client", "labA").CombinedOutput(); err != nil {
		t.Fatalf("redisrepl certs: %v\n%s", err, out)
	}
	if _, err := config.LoadGateway("/etc/redisrepl-gateway.toml"); err != nil {
		t.Errorf("/etc/redisrepl-gateway.toml with its certificates: %v", err)
	}

	// Upgrade: the edited file and the state stay.
	edited := "\n# edited by the lab\n"
	f, err := os.OpenFile("/etc/redisrepl.toml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edited)
	f.Close()
	if err := os.WriteFile("/var/lib/redisrepl/lab.state", []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg(t, "-i", deb2)
	if s := installedStatus(t); s != "ii "+v2 {
		t.Fatalf("after the upgrade: %q", s)
	}
	if b, _ := os.ReadFile("/etc/redisrepl.toml"); !strings.HasSuffix(string(b), edited) {
		t.Errorf("the upgrade replaced the edited /etc/redisrepl.toml")
	}
	if _, err := os.Stat("/var/lib/redisrepl/lab.state"); err != nil {
		t.Errorf("the upgrade lost the state: %v", err)
	}
	if out, _ := exec.Command("/usr/bin/redisrepl", "version").Output(); strings.TrimSpace(string(out)) != "redisrepl "+v2 {
		t.Errorf("after the upgrade: %q", out)
	}

	// Remove: the program goes, configuration and state stay.
	dpkg(t, "-r", "redisrepl")
	if s := installedStatus(t); !strings.HasPrefix(s, "rc") {
		t.Errorf("after dpkg -r: %q, want rc (config-files)", s)
	}
	mustBeGone(t, "/usr/bin/redisrepl", "/lib/systemd/system/redisrepl.service", "/lib/systemd/system/redisrepl-gateway.service")
	for _, p := range []string{"/etc/redisrepl.toml", "/var/lib/redisrepl/lab.state"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("dpkg -r removed %s: %v", p, err)
		}
	}

	// Purge: configuration and state go (the keys made above, not the
	// package's, are left in /etc/redisrepl/pki for the administrator).
	dpkg(t, "--purge", "redisrepl")
	if s := installedStatus(t); s != "" && !strings.HasPrefix(s, "un") {
		t.Errorf("after dpkg --purge: %q", s)
	}
	mustBeGone(t, "/etc/redisrepl.toml", "/etc/redisrepl-gateway.toml", "/var/lib/redisrepl")
	os.RemoveAll("/etc/redisrepl/pki")
	os.Remove("/etc/redisrepl")
}
