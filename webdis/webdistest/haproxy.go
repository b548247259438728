package webdistest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/redisrepl/redisrepl/config"
)

// HAProxyConfig is template (a haproxy.cfg: examples/haproxy/haproxy.cfg)
// made to run here: its bind line on listen, its servers replaced by one
// per backend with the first server's options, and what needs root or a
// syslog (user, group, log) left out.
func HAProxyConfig(template, listen string, backends []string) (string, error) {
	var out []string
	opts := ""
	for _, line := range strings.Split(template, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			out = append(out, line)
			continue
		}
		switch f[0] {
		case "user", "group", "log":
			continue
		case "option":
			if len(f) > 1 && f[1] == "tcplog" {
				continue
			}
		case "bind":
			line = "    bind " + listen
		case "server":
			if opts == "" && len(f) > 3 {
				opts = strings.Join(f[3:], " ")
			}
			continue
		}
		out = append(out, line)
	}
	if opts == "" {
		return "", errors.New("webdistest: the haproxy template has no server line with options")
	}
	text := strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
	for i, b := range backends {
		text += fmt.Sprintf("    server gw%d %s %s\n", i+1, b, opts)
	}
	return text, nil
}

// StartHAProxy runs haproxy in the foreground on a free loopback port with
// HAProxyConfig(template, …, backends) and waits until it accepts.
func StartHAProxy(dir, template string, backends []string) (*Process, error) {
	return onFreePort(func(port int) (*Process, error) {
		listen := fmt.Sprintf("127.0.0.1:%d", port)
		base := filepath.Join(dir, fmt.Sprintf("haproxy-%d", port))
		cfg, err := HAProxyConfig(template, listen, backends)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(base+".cfg", []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		// -db: stay in the foreground, so that the pid is haproxy's own.
		p, err := StartProcess("haproxy", listen, "", base+".out", syscall.SIGKILL, "haproxy", "-db", "-f", base+".cfg")
		if err != nil {
			return nil, err
		}
		if err := p.waitFor("connections accepted", func() error { return dialTCP(listen) }); err != nil {
			return nil, p.fail(err)
		}
		return p, nil
	})
}

// StartGateway runs the gateway of binary (a built redisrepl) as a process
// on cfg, written to a file in dir, and waits until it accepts.
func StartGateway(dir, binary string, cfg *config.Gateway) (*Process, error) {
	base := filepath.Join(dir, "gateway-"+port2(cfg.Listen))
	return startGatewayFile(base+".toml", base+".out", binary, cfg)
}

func startGatewayFile(file, out, binary string, cfg *config.Gateway) (*Process, error) {
	if err := os.WriteFile(file, []byte(GatewayTOML(cfg)), 0o600); err != nil {
		return nil, err
	}
	p, err := StartProcess("redisrepl-gateway", cfg.Listen, "", out, syscall.SIGKILL, binary, "gateway", "-config", file)
	if err != nil {
		return nil, err
	}
	if err := p.waitFor("HTTPS answer", func() error { return dialTCP(cfg.Listen) }); err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

func port2(addr string) string { return fmt.Sprint(port(addr)) }
