package webdistest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
)

const (
	readyTimeout = 10 * time.Second // every wait for a process to answer
	stopTimeout  = 5 * time.Second  // SIGTERM grace before SIGKILL
	pollEvery    = 25 * time.Millisecond
)

// Binaries are the programs the harness runs, by base name.
var Binaries = []string{"redis-server", "webdis", "nginx"}

// FindBinary looks name up in PATH, then in the sbin/bin directories that
// a non-login PATH may lack (nginx lives in /usr/sbin). "redis-server" is
// the server RedisEnv names, if it names one.
func FindBinary(name string) (string, error) {
	if name == "redis-server" {
		name = redisServer()
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("webdistest: %s not found in PATH or /usr/sbin, /usr/bin", name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a child process (redis-server, webdis or nginx) started in the
// foreground by this package, so that its pid is ours to signal.
type Process struct {
	Name    string // "redis-server", "webdis" or "nginx"
	Addr    string // "127.0.0.1:PORT" it listens on
	LogFile string // the program's own log file
	OutFile string // its stdout and stderr

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	waitErr error
}

// StartProcess runs argv (its program found by FindBinary) in its own
// process group, with outFile (in the directory it runs in) for its stdout
// and stderr, and logFile for Tail; addr is where it listens, which Stop
// waits to refuse connections. deathSig is sent to the
// process if the test binary dies first: SIGKILL for redis and webdis,
// SIGTERM for nginx, whose master then stops its workers.
func StartProcess(name, addr, logFile, outFile string, deathSig syscall.Signal, argv ...string) (*Process, error) {
	out, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child keeps its own copy
	p, err := start(name, addr, filepath.Dir(outFile), out, deathSig, argv)
	if err != nil {
		return nil, err
	}
	p.LogFile, p.OutFile = logFile, outFile
	return p, nil
}

// StartProcessTo is StartProcess with the child's stdout and stderr written
// to out (a program that relays them as they come, like the demo) instead
// of a file; the process is reaped only once out has everything.
func StartProcessTo(name, addr string, out io.Writer, deathSig syscall.Signal, argv ...string) (*Process, error) {
	return start(name, addr, "", out, deathSig, argv)
}

func start(name, addr, dir string, out io.Writer, deathSig syscall.Signal, argv []string) (*Process, error) {
	bin, err := FindBinary(argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dir
	// Own process group (so SIGKILL reaches nginx's workers too, and a
	// Ctrl-C at a terminal reaches only the test or demo, which then stops
	// its children itself) and a parent-death signal so that a crashed
	// test binary leaks nothing.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("webdistest: start %s: %w", name, err)
	}
	p := &Process{Name: name, Addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ExitErr is how the process ended (nil while it runs or after a clean exit).
func (p *Process) ExitErr() error {
	if p.Running() {
		return nil
	}
	return p.waitErr
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to the process (by its pid), waits for it to exit and,
// after a timeout, kills its process group with SIGKILL. It returns once the
// process is reaped and its port refuses connections. Stopping a stopped
// process is a no-op.
func (p *Process) Stop() error {
	if !p.Running() {
		return nil
	}
	pid := p.Pid()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the group: nginx workers as well
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			return fmt.Errorf("webdistest: %s (pid %d) survived SIGKILL", p.Name, pid)
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("webdistest: %s (pid %d) exited but %s still accepts connections", p.Name, pid, p.Addr)
		}
		time.Sleep(pollEvery)
	}
}

// Tail returns the last lines of the process's log and output files.
func (p *Process) Tail(lines int) string {
	var b strings.Builder
	for _, f := range []string{p.LogFile, p.OutFile} {
		if f == "" {
			continue
		}
		t := tailFile(f, lines)
		if t == "" {
			continue
		}
		fmt.Fprintf(&b, "--- %s ---\n%s", f, t)
		if !strings.HasSuffix(t, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func tailFile(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// waitFor polls check until it returns nil, the process exits, or the
// ready timeout passes. Errors name the process and carry its log's tail.
func (p *Process) waitFor(what string, check func() error) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		if !p.Running() {
			return fmt.Errorf("webdistest: %s on %s exited before %s (%v)\n%s", p.Name, p.Addr, what, p.waitErr, p.Tail(20))
		}
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webdistest: %s (pid %d) on %s: no %s within %v: %v\n%s", p.Name, p.Pid(), p.Addr, what, readyTimeout, last, p.Tail(20))
		}
		time.Sleep(pollEvery)
	}
}

// fail stops a process that did not come up and returns err.
func (p *Process) fail(err error) error {
	_ = p.Stop()
	return err
}

// StartRedis starts redis-server on 127.0.0.1:port without persistence,
// logging to dir/redis-PORT.log, and waits until it answers PING; extra
// are more options (e.g. "--replicaof", host, port).
func StartRedis(dir string, port int, extra ...string) (*Process, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := filepath.Join(dir, fmt.Sprintf("redis-%d", port))
	p, err := StartProcess("redis-server", addr, base+".log", base+".out", syscall.SIGKILL,
		append([]string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--logfile", base + ".log"}, extra...)...)
	if err != nil {
		return nil, err
	}
	if err := p.waitFor("PING reply", func() error { return pingRedis(addr) }); err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

func pingRedis(addr string) error {
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("PING")
	return err
}

// WebdisMaxRequestSize is the http_max_request_size given to webdis
// (its own default is 128 MiB) so that nginx is the only body limit.
const WebdisMaxRequestSize = 512 << 20

// WebdisConfig describes a webdis instance.
type WebdisConfig struct {
	Port      int      // HTTP port on 127.0.0.1
	RedisPort int      // redis-server on 127.0.0.1
	Database  int      // "database"
	Disabled  []string // ACL: commands disabled for every client
	Threads   int      // default 4
	PoolSize  int      // redis connections per thread; default 8
	// MaxRequestSize is http_max_request_size in bytes; 0 means
	// WebdisMaxRequestSize.
	MaxRequestSize int
}

// StartWebdis writes dir/webdis-PORT.json and runs webdis in the foreground
// on 127.0.0.1:PORT. It waits until webdis answers HTTP (GET /PING gets a
// response; 503 is accepted because redis may be down on purpose).
func StartWebdis(dir string, c WebdisConfig) (*Process, error) {
	if c.Threads == 0 {
		c.Threads = 4
	}
	if c.PoolSize == 0 {
		c.PoolSize = 8
	}
	if c.MaxRequestSize == 0 {
		c.MaxRequestSize = WebdisMaxRequestSize
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.Port)
	base := filepath.Join(dir, fmt.Sprintf("webdis-%d", c.Port))
	conf := map[string]any{
		"redis_host":            "127.0.0.1",
		"redis_port":            c.RedisPort,
		"redis_auth":            nil,
		"http_host":             "127.0.0.1",
		"http_port":             c.Port,
		"http_max_request_size": c.MaxRequestSize,
		"threads":               c.Threads,
		"pool_size":             c.PoolSize,
		"daemonize":             false,
		"pidfile":               base + ".pid",
		"database":              c.Database,
		"websockets":            false,
		"verbosity":             3,
		"logfile":               base + ".log",
	}
	if len(c.Disabled) > 0 {
		conf["acl"] = []any{map[string]any{"disabled": c.Disabled}}
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		return nil, err
	}
	p, err := StartProcess("webdis", addr, base+".log", base+".out", syscall.SIGKILL, "webdis", base+".json")
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	err = p.waitFor("HTTP answer", func() error {
		resp, err := client.Get("http://" + addr + "/PING")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
	if err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

// NginxConfig describes an nginx instance proxying location /redis/ with
// mutual TLS to webdis.
type NginxConfig struct {
	Port        int    // HTTPS port on 127.0.0.1
	WebdisPort  int    // upstream webdis on 127.0.0.1
	Certs       *Certs // server cert/key, client CA; the client cert is used to probe readiness
	MaxBodySize string // client_max_body_size; "" leaves nginx's default (1m)
	HTTP2       bool   // "http2" on the listen: clients that offer it get HTTP/2 (nginx 1.22 syntax)
}

// URL is the base URL of the Webdis location, without a trailing slash.
func (c NginxConfig) URL() string { return fmt.Sprintf("https://127.0.0.1:%d/redis", c.Port) }

const nginxConf = `# generated by webdistest
{{user}}worker_processes 2;
pid {{base}}.pid;
error_log {{base}}-error.log info;
events { worker_connections 1024; }
http {
    access_log {{base}}-access.log combined buffer=32k flush=1s;
    client_body_temp_path {{tmp}}/body;
    proxy_temp_path       {{tmp}}/proxy;
    fastcgi_temp_path     {{tmp}}/fastcgi;
    uwsgi_temp_path       {{tmp}}/uwsgi;
    scgi_temp_path        {{tmp}}/scgi;
    upstream webdis {
        server 127.0.0.1:{{webdis}};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:{{port}} ssl{{http2}};
        server_name localhost;
        ssl_certificate        {{cert}};
        ssl_certificate_key    {{key}};
        ssl_client_certificate {{ca}};
        ssl_verify_client      on;
        ssl_protocols          TLSv1.2 TLSv1.3;
        # Without it, nginx spools every body over 16 KiB to a file and each
        # such request stalls about 44 ms (measured); the example config has it.
        client_body_buffer_size 1m;
        {{maxbody}}
        location /redis/ {
            proxy_pass http://webdis/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
`

// StartNginx writes dir/nginx-PORT.conf and runs `nginx -p dir -c conf -g
// 'daemon off;'`. It waits until a POST of PING with the client certificate
// gets an HTTP response (502 is accepted: webdis may be down on purpose).
func StartNginx(dir string, c NginxConfig) (*Process, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", c.Port)
	base := filepath.Join(dir, fmt.Sprintf("nginx-%d", c.Port))
	tmp := base + "-tmp"
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return nil, err
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers can then write the temp dirs made above
	}
	maxbody := ""
	if c.MaxBodySize != "" {
		maxbody = "client_max_body_size " + c.MaxBodySize + ";"
	}
	http2 := ""
	if c.HTTP2 {
		http2 = " http2"
	}
	conf := strings.NewReplacer("{{user}}", user, "{{base}}", base, "{{tmp}}", tmp,
		"{{webdis}}", strconv.Itoa(c.WebdisPort), "{{port}}", strconv.Itoa(c.Port),
		"{{cert}}", c.Certs.ServerCert, "{{key}}", c.Certs.ServerKey, "{{ca}}", c.Certs.CA,
		"{{maxbody}}", maxbody, "{{http2}}", http2).Replace(nginxConf)
	if err := os.WriteFile(base+".conf", []byte(conf), 0o644); err != nil {
		return nil, err
	}
	client, err := httpClient(c.Certs.CA, c.Certs.ClientCert, c.Certs.ClientKey)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	client.Timeout = time.Second
	p, err := StartProcess("nginx", addr, base+"-error.log", base+".out", syscall.SIGTERM,
		"nginx", "-p", dir, "-c", base+".conf", "-e", base+"-error.log", "-g", "daemon off;")
	if err != nil {
		return nil, err
	}
	err = p.waitFor("HTTPS answer", func() error {
		_, _, err := post(client, c.URL()+"/", "PING")
		return err
	})
	if err != nil {
		return nil, p.fail(err)
	}
	return p, nil
}

// httpClient is an HTTPS client trusting caFile and presenting certFile.
func httpClient(caFile, certFile, keyFile string) (*http.Client, error) {
	cfg, err := TLSConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return newClient(cfg), nil
}

// newClient has no overall timeout, so that it can hold a PSUBSCRIBE stream.
func newClient(cfg *tls.Config) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 8,
	}
	return &http.Client{Transport: tr}
}

// post sends body to url and returns the status and the whole reply.
func post(c *http.Client, url, body string) (int, []byte, error) {
	resp, err := c.Post(url, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// errStatus is returned by the wait loops for a reply that is not 200.
type errStatus struct {
	code int
	body []byte
}

func (e errStatus) Error() string {
	return fmt.Sprintf("HTTP %d: %q", e.code, bytes.TrimSpace(e.body))
}
