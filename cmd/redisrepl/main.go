// Command redisrepl keeps namespaces of Redis data in sync between sites
// that reach each other only over HTTPS with mutual TLS, through Webdis.
//
// One file per subcommand: run.go (the service, and the original one-link
// flags; the supervisor is service.go, its endpoints http.go), verify.go,
// certs.go, gateway.go (the hub gateway); version is in this file.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

const usage = `redisrepl replicates namespaces (key prefixes) of a local Redis to a remote
Redis reached through Webdis behind an HTTPS proxy that demands client
certificates, and with direction "both" (-rc) remote changes back.

Usage:
  redisrepl [run] [-config FILE]     run every [[link]] of FILE (default /etc/redisrepl.toml)
  redisrepl -raddr ADDR -haddr URL -cert FILE -key FILE -CA FILE -nam NAMESPACE [-rc]
                                     run one link given by flags (the original command line)
  redisrepl verify [-config FILE] [-link NAME] [-repair[=remote|local]]
                                     compare (and repair) a link's namespace on both sides;
                                     exit 0 equal, 1 different, 2 could not compare
  redisrepl certs -dir DIR [-ca] [-server HOST,...] [-client NAME,...]
                                     make the CA and the hub's and labs' TLS certificates
  redisrepl gateway [-config FILE]   serve the hub: Webdis's protocol over mutual TLS, each
                                     lab's certificate confined to its namespaces (default
                                     file /etc/redisrepl-gateway.toml)
  redisrepl version                  print the version (also: -version)

Run 'redisrepl run -h' for every flag of the service and the one-link form,
'redisrepl verify -h', 'redisrepl certs -h' and 'redisrepl gateway -h' for theirs.
Configuration reference, semantics and examples: README.md.
`

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runCmd(args[1:], stdout, stderr)
		case "verify":
			return verifyCmd(args[1:], stdout, stderr)
		case "certs":
			return certsCmd(args[1:], stdout, stderr)
		case "gateway":
			return gatewayCmd(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "redisrepl", version)
			return 0
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	return runCmd(args, stdout, stderr)
}
