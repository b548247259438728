package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redisrepl/redisrepl/webdis/pki"
)

const certsUsage = `Usage:
  redisrepl certs -dir DIR [-ca] [-server HOST[,HOST...]] [-client NAME[,NAME...]]
                  [-days N] [-ca-days N] [-ca-name NAME] [-force]

Makes the certificates of a deployment, all signed by one CA kept in DIR:

  -ca                  a new CA: DIR/ca.pem (certificate) and DIR/ca.key (its key)
  -server HOST,...     the hub's server certificate, for the DNS names and IP
                       addresses the labs use in their remote URL:
                       DIR/server.pem and DIR/server.key
  -client NAME,...     one client certificate per lab (CommonName NAME):
                       DIR/NAME.pem and DIR/NAME.key

The flags combine; the CA is made first. Without -ca, DIR/ca.pem and
DIR/ca.key must exist (from an earlier 'redisrepl certs -dir DIR -ca').
Keys are ECDSA P-256, written 0600; certificates 0644. An existing file is
never overwritten without -force, and then nothing at all is written.

Where the files go:
  hub (nginx):  ssl_certificate server.pem; ssl_certificate_key server.key;
                ssl_client_certificate ca.pem; ssl_verify_client on;
  each lab:     NAME.pem, NAME.key and ca.pem, as cert, key and ca in its
                redisrepl configuration.
  ca.key:       nowhere: keep it (and a backup) where certificates are issued.

Example:
  redisrepl certs -dir /root/redisrepl-pki -ca -server hub.example.org,10.0.0.5 -client labA,labB
  redisrepl certs -dir /root/redisrepl-pki -client labC          # later, one more lab

Exit status: 0 written, 1 failed (no CA, existing file, I/O), 2 bad usage.

Flags:
`

// Certificate file names in -dir.
const (
	caCertName     = "ca.pem"
	caKeyName      = "ca.key"
	serverBaseName = "server"
)

// maxDays bounds -days and -ca-days (100 years).
const maxDays = 36525

// certsCmd is "redisrepl certs": it makes a CA, the hub's server
// certificate and the labs' client certificates with package pki.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("redisrepl certs", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var (
		dir     = fset.String("dir", "", "`directory` of the CA and of the files written (created 0700 if missing)")
		makeCA  = fset.Bool("ca", false, "make a new CA: DIR/ca.pem and DIR/ca.key")
		caName  = fset.String("ca-name", "redisrepl CA", "`name` (CommonName) of a new CA (with -ca)")
		caDays  = fset.Int("ca-days", 3652, "validity of a new CA, in `days` (with -ca)")
		days    = fset.Int("days", 825, "validity of server and client certificates, in `days` (never past the CA's)")
		force   = fset.Bool("force", false, "overwrite existing files")
		servers []string
		clients []string
	)
	fset.Func("server", "issue DIR/server.pem and DIR/server.key for these `hosts` (comma-separated DNS names and IP addresses; repeatable)", func(s string) error {
		servers = append(servers, splitList(s)...)
		return nil
	})
	fset.Func("client", "issue DIR/NAME.pem and DIR/NAME.key for each of these lab `names` (comma-separated; repeatable)", func(s string) error {
		clients = append(clients, splitList(s)...)
		return nil
	})
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), certsUsage)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "redisrepl certs: "+format+" (see redisrepl certs -h)\n", a...)
		return 2
	}
	set := make(map[string]bool)
	fset.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case fset.NArg() > 0:
		return usageErr("unexpected argument %q", fset.Arg(0))
	case *dir == "":
		return usageErr("-dir is required")
	case !*makeCA && !set["server"] && !set["client"]:
		return usageErr("nothing to do: give -ca, -server HOSTS and/or -client NAMES")
	case set["server"] && len(servers) == 0:
		return usageErr("-server needs at least one host name or IP address")
	case set["client"] && len(clients) == 0:
		return usageErr("-client needs at least one name")
	case *days <= 0 || *days > maxDays:
		return usageErr("-days must be between 1 and %d, not %d", maxDays, *days)
	case *caDays <= 0 || *caDays > maxDays:
		return usageErr("-ca-days must be between 1 and %d, not %d", maxDays, *caDays)
	case !*makeCA && (set["ca-name"] || set["ca-days"]):
		return usageErr("-ca-name and -ca-days apply to a new CA: add -ca")
	}
	for _, h := range servers {
		if net.ParseIP(h) == nil {
			if err := pki.CheckDNSName(h); err != nil {
				return usageErr("-server: %v", strings.TrimPrefix(err.Error(), "pki: "))
			}
		}
	}
	seen := make(map[string]bool)
	for _, n := range clients {
		if err := checkClientName(n); err != nil {
			return usageErr("-client: %v", err)
		}
		if seen[strings.ToLower(n)] {
			return usageErr("-client: %q is given twice", n)
		}
		seen[strings.ToLower(n)] = true
	}

	path := func(name string) string { return filepath.Join(*dir, name) }
	caCert, caKey := path(caCertName), path(caKeyName)
	type pair struct{ cert, key string }
	var outputs []pair
	if *makeCA {
		outputs = append(outputs, pair{caCert, caKey})
	}
	if len(servers) > 0 {
		outputs = append(outputs, pair{path(serverBaseName + ".pem"), path(serverBaseName + ".key")})
	}
	for _, n := range clients {
		outputs = append(outputs, pair{path(n + ".pem"), path(n + ".key")})
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0) // the "wrote" lines
	fail := func(format string, a ...any) int {
		tw.Flush() // what was written before the failure
		fmt.Fprintf(stderr, "redisrepl certs: "+format+"\n", a...)
		return 1
	}
	// Refuse before writing anything, so that a combined call does all or nothing.
	if !*force {
		var exist []string
		for _, p := range outputs {
			for _, f := range []string{p.cert, p.key} {
				if _, err := os.Lstat(f); err == nil {
					exist = append(exist, f)
				}
			}
		}
		if len(exist) > 0 {
			return fail("not overwriting %s (use -force to replace; nothing was written)", strings.Join(exist, ", "))
		}
	}

	var ca *pki.CA
	if !*makeCA {
		var err error
		if ca, err = loadCA(*dir, caCert, caKey); err != nil {
			return fail("%v", err)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fail("%v", err)
	}

	until := func(certPEM []byte) string {
		if c, err := pki.ParseCert(certPEM); err == nil {
			return "valid until " + c.NotAfter.UTC().Format(time.DateOnly)
		}
		return ""
	}
	wrote := func(file, what string) { fmt.Fprintf(tw, "wrote %s\t%s\n", file, what) }
	if *makeCA {
		var err error
		if ca, err = pki.NewCA(*caName, time.Duration(*caDays)*24*time.Hour); err != nil {
			return fail("%v", err)
		}
		if err := ca.WriteFiles(caCert, caKey, *force); err != nil {
			return fail("%v", err)
		}
		wrote(caCert, fmt.Sprintf("CA certificate %q, %s", ca.Cert.Subject.CommonName, until(ca.CertPEM)))
		wrote(caKey, "CA private key (0600): keep it secret, off the hub and the labs")
	}
	leaf := time.Duration(*days) * 24 * time.Hour
	if len(servers)+len(clients) > 0 && time.Now().Add(leaf).After(ca.Cert.NotAfter) {
		fmt.Fprintf(stderr, "redisrepl certs: note: the CA expires on %s; certificates end then, before %d days\n",
			ca.Cert.NotAfter.UTC().Format(time.DateOnly), *days)
	}
	if len(servers) > 0 {
		certPEM, keyPEM, err := ca.IssueServer(servers, leaf)
		if err != nil {
			return fail("%v", err)
		}
		p := pair{path(serverBaseName + ".pem"), path(serverBaseName + ".key")}
		if err := pki.WriteFiles(p.cert, certPEM, p.key, keyPEM, *force); err != nil {
			return fail("%v", err)
		}
		wrote(p.cert, fmt.Sprintf("server certificate for %s, %s", strings.Join(servers, ", "), until(certPEM)))
		wrote(p.key, "its private key (0600)")
	}
	for _, n := range clients {
		certPEM, keyPEM, err := ca.IssueClient(n, leaf)
		if err != nil {
			return fail("%v", err)
		}
		p := pair{path(n + ".pem"), path(n + ".key")}
		if err := pki.WriteFiles(p.cert, certPEM, p.key, keyPEM, *force); err != nil {
			return fail("%v", err)
		}
		wrote(p.cert, fmt.Sprintf("client certificate %q, %s", n, until(certPEM)))
		wrote(p.key, "its private key (0600)")
	}
	tw.Flush()
	printNextSteps(stdout, *dir, *makeCA, servers, clients, *force)
	return 0
}

// loadCA loads the CA of dir, explaining what to do when it is missing.
func loadCA(dir, certFile, keyFile string) (*pki.CA, error) {
	if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s (%s does not exist): make one first with 'redisrepl certs -dir %s -ca', or add -ca to this command",
			dir, certFile, dir)
	}
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s exists but its key %s does not: certificates can only be issued where the CA key is kept", certFile, keyFile)
	}
	ca, err := pki.LoadCA(certFile, keyFile)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "pki: "))
	}
	if time.Now().After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("the CA in %s expired on %s: make a new one with -ca -force, then reissue every certificate",
			certFile, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	return ca, nil
}

// checkClientName accepts lab names usable as file names and as a
// certificate's CommonName.
func checkClientName(n string) error {
	if len(n) > 64 {
		return fmt.Errorf("name %q is longer than 64 characters", n)
	}
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return fmt.Errorf("name %q: use letters, digits and (after the first character) '-', '_' or '.'", n)
		}
	}
	switch strings.ToLower(n) {
	case "ca", serverBaseName:
		return fmt.Errorf("name %q is taken by the %s files", n, strings.ToLower(n))
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// printNextSteps tells where each file just written goes.
func printNextSteps(w io.Writer, dir string, newCA bool, servers, clients []string, force bool) {
	p := func(name string) string { return filepath.Join(dir, name) }
	fmt.Fprintln(w, "\nNext steps:")
	if newCA && len(servers) == 0 && len(clients) == 0 {
		fmt.Fprintf(w, "  Issue the hub's server certificate and one client certificate per lab, e.g.:\n"+
			"      redisrepl certs -dir %s -server hub.example.org -client labA,labB\n", dir)
	}
	if len(servers) > 0 {
		fmt.Fprintf(w, `  Hub: copy %s, %s and %s to the hub; there, as root:
      install -d -m 0755 /etc/nginx/redisrepl
      install -m 0644 server.pem ca.pem /etc/nginx/redisrepl/
      install -m 0600 server.key /etc/nginx/redisrepl/
    and in the nginx server block (examples/nginx-redisrepl.conf):
      ssl_certificate        /etc/nginx/redisrepl/server.pem;  # presented to the labs
      ssl_certificate_key    /etc/nginx/redisrepl/server.key;
      ssl_client_certificate /etc/nginx/redisrepl/ca.pem;      # lab certificates must be signed by this CA
      ssl_verify_client      on;
    then: nginx -t && systemctl reload nginx
    The labs' remote URL (https://HOST/redis) must name one of: %s
`, p(serverBaseName+".pem"), p(serverBaseName+".key"), p(caCertName), strings.Join(servers, ", "))
	}
	for _, n := range clients {
		fmt.Fprintf(w, `  Lab %[1]s: copy %[2]s, %[3]s and %[4]s to the lab; there, as root
  (the redisrepl user as in examples/redisrepl.service, so that only the service reads the key):
      install -d -o root -g redisrepl -m 0750 /etc/redisrepl
      install -o root -g redisrepl -m 0640 %[1]s.pem %[1]s.key ca.pem /etc/redisrepl/
    and in /etc/redisrepl.toml ([defaults] or the lab's [[link]]s):
      cert = "/etc/redisrepl/%[1]s.pem"
      key  = "/etc/redisrepl/%[1]s.key"
      ca   = "/etc/redisrepl/ca.pem"   # verifies the hub's server certificate
    then: systemctl reload redisrepl
`, n, p(n+".pem"), p(n+".key"), p(caCertName))
	}
	if len(clients) > 0 && len(servers) == 0 {
		fmt.Fprintf(w, "  The hub's nginx must trust this CA (ssl_client_certificate ... %s;): nothing to change if it already does.\n", caCertName)
	}
	fmt.Fprintf(w, "  Keep %s secret and backed up, off the hub and the labs: it signs new certificates.\n", p(caKeyName))
	if newCA && force {
		fmt.Fprintln(w, "  The new CA replaced the old one: certificates the old CA issued no longer verify;\n"+
			"  reissue the server and every client certificate, and deploy the new ca.pem everywhere.")
	}
}
