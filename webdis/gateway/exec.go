package gateway

import (
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/rs/zerolog"
)

// buffers are reused for request bodies and replies.
type buffers struct {
	in, out []byte
	args    [][]byte
	iargs   []any
}

var bufPool = sync.Pool{New: func() any { return &buffers{in: make([]byte, 0, 4096), out: make([]byte, 0, 4096)} }}

func putBuffers(b *buffers) {
	if cap(b.in) > 1<<20 || cap(b.out) > 1<<20 {
		return
	}
	clear(b.args[:cap(b.args)])
	clear(b.iargs[:cap(b.iargs)])
	bufPool.Put(b)
}

// ServeHTTP serves one Webdis request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := g.state.Load().match(r.TLS)
	if t == nil {
		g.metrics.tenant(unknownTenant).refused(reasonUnknownCert)
		g.log.Warn().Str("client", certName(r.TLS)).Str("reason", reasonUnknownCert).Msg("refused")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusForbidden)
		return
	}
	b := bufPool.Get().(*buffers)
	defer putBuffers(b)
	status, cmdName, in, out := g.serve(w, r, t, b)
	d := time.Since(start)
	t.m.done(status, in, out, d)
	g.log.Info().Str("tenant", t.cfg.Name).Str("cmd", cmdName).Int("status", status).
		Dur("duration", d).Int("in", in).Int("out", out).Msg("request")
}

// serve answers r for tenant t and returns what the access log says.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, t *tenant, b *buffers) (status int, cmd string, in, out int) {
	uri, ok := g.strip(r.RequestURI)
	if !ok {
		return g.empty(w, http.StatusNotFound), "", 0, 0
	}
	var body []byte
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut:
		// The body must come within bodyTimeout (slow clients hold a
		// goroutine and a connection, never a Redis connection). The
		// deadline is lifted once it is in: net/http's own read of the
		// connection is how a stream learns that its client left.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(bodyTimeout))
		var err error
		b.in, err = readBody(b.in[:0], r, g.cfg.MaxBodyBytes)
		rc.SetReadDeadline(time.Time{})
		if err == errTooLarge {
			t.m.refused(reasonBody)
			g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonBody).Msg("refused")
			return g.empty(w, http.StatusRequestEntityTooLarge), "", len(b.in), 0
		}
		if err != nil {
			g.log.Info().Err(err).Str("tenant", t.cfg.Name).Msg("request body not received")
			return g.empty(w, http.StatusBadRequest), "", len(b.in), 0
		}
		body = b.in
		if r.Method == http.MethodPost {
			uri, body = body, nil
		}
	case http.MethodOptions:
		w.Header().Set("Allow", "GET,POST,PUT,OPTIONS")
		return g.empty(w, http.StatusOK), "", 0, 0
	default:
		return g.empty(w, http.StatusMethodNotAllowed), "", 0, 0
	}
	in = len(uri) + len(body)
	c, err := parseCommand(b.args, uri, body)
	b.args = c.args
	if err != nil {
		return g.refuse(w, t, "", reasonNoCommand), "", in, 0
	}
	name := c.name()
	if c.db >= 0 && c.db != g.cfg.RedisDB {
		return g.refuse(w, t, name, reasonBadDB), name, in, 0
	}
	k, why := t.check(&c)
	if why != "" {
		return g.refuse(w, t, name, why), name, in, 0
	}
	if k == kSubscribe {
		status, out = g.stream(w, r, t, &c)
		return status, name, in, out
	}
	select {
	case t.slots <- struct{}{}:
	case <-r.Context().Done():
		return g.empty(w, http.StatusServiceUnavailable), name, in, 0
	}
	reply, err := g.run(r, t, k, &c, b)
	<-t.slots
	if err != nil {
		if r.Context().Err() == nil {
			g.log.Warn().Err(err).Str("tenant", t.cfg.Name).Str("cmd", name).Msg("hub Redis unavailable")
		}
		return g.empty(w, http.StatusServiceUnavailable), name, in, 0
	}
	if re, ok := reply.(redis.Error); ok && isACLRefusal(re) {
		// Redis refused a key or a channel under the tenant's user.
		t.m.refused(reasonACL)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", name).Str("reason", reasonACL).Msg("refused")
	}
	status = http.StatusOK
	switch c.format {
	case fmtRaw:
		b.out = appendRaw(b.out[:0], reply, false)
	case fmtJSON:
		b.out = appendJSON(b.out[:0], c.args[0], reply)
	default:
		b.out, status = appendCustom(b.out[:0], reply)
		if status != http.StatusOK {
			return g.empty(w, status), name, in, 0
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{c.mime}
	h["Content-Length"] = []string{strconv.Itoa(len(b.out))}
	if len(b.out) > 64<<10 { // a client that stops reading must not hold us
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(bodyTimeout))
	}
	w.WriteHeader(status)
	w.Write(b.out)
	return status, name, in, len(b.out)
}

// strip removes the query and the gateway's path prefix from a request
// target; the rest has no leading "/".
func (g *Gateway) strip(target string) ([]byte, bool) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	p := g.cfg.URLPath
	if p != "/" {
		if !strings.HasPrefix(target, p) {
			return nil, false
		}
		target = target[len(p):]
		if target != "" && target[0] != '/' {
			return nil, false
		}
	}
	target = strings.TrimPrefix(target, "/")
	return []byte(target), true
}

func readBody(buf []byte, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return buf, errTooLarge
	}
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength {
		buf = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyTimeout bounds the time to receive a request body, and to send a
// large reply.
const bodyTimeout = time.Minute

// isACLRefusal: Redis's error for a command, key or channel the user may
// not use, directly (NOPERM) or inside a script (Valkey 8: "ERR ACL failure
// in script").
func isACLRefusal(e redis.Error) bool {
	s := string(e)
	return strings.HasPrefix(s, "NOPERM") || strings.HasPrefix(s, "ERR The user executing the script can't") ||
		strings.HasPrefix(s, "ERR This Redis command is not allowed from script") || strings.HasPrefix(s, "ERR ACL failure in script")
}

var errTooLarge = &tooLarge{}

type tooLarge struct{}

func (*tooLarge) Error() string { return "request body too large" }

func (g *Gateway) empty(w http.ResponseWriter, status int) int {
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(status)
	return status
}

// refuse answers 403 with an empty body, as Webdis does for a command its
// ACL disables, and logs the tenant, the command name and the reason.
func (g *Gateway) refuse(w http.ResponseWriter, t *tenant, name, reason string) int {
	t.m.refused(reason)
	g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", name).Str("reason", reason).Msg("refused")
	return g.empty(w, http.StatusForbidden)
}

// run executes c for t; err is a failure to reach Redis (a reply of Redis,
// error replies included, is reply).
func (g *Gateway) run(r *http.Request, t *tenant, k kind, c *command, b *buffers) (any, error) {
	ctx := r.Context()
	switch k {
	case kScan:
		return g.scan(r, t, c)
	case kKeys:
		return g.keys(r, t, c)
	case kInfo:
		return g.adminDo(r, "INFO", "server")
	case kConfigGet:
		// A link asks before it subscribes and when its events lapsed:
		// make sure they are on (an operator may have turned them off).
		g.ensureKeyspaceEvents(ctx)
		return g.adminDo(r, "CONFIG", "GET", "notify-keyspace-events")
	case kEval:
		if isScanScript(c.args) {
			return g.scanScript(r, t, c)
		}
	}
	conn, err := t.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	b.iargs = b.iargs[:0]
	for _, a := range c.args[1:] {
		b.iargs = append(b.iargs, a)
	}
	// Do, not DoContext (a goroutine per call): the commands served do not
	// block, and commandTimeout bounds the wait.
	reply, err := conn.Do(string(c.args[0]), b.iargs...)
	if re, ok := err.(redis.Error); ok {
		return re, nil
	}
	return reply, err
}

func (g *Gateway) adminDo(r *http.Request, cmd string, args ...any) (any, error) {
	conn, err := g.admin.GetContext(r.Context())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	reply, err := conn.Do(cmd, args...)
	if re, ok := err.(redis.Error); ok {
		return re, nil
	}
	return reply, err
}

// newStdLog sends net/http's own messages (TLS handshakes refused: no
// certificate, another CA, expired) to the log.
func newStdLog(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Info().Str("reason", strings.TrimSpace(string(p))).Msg("connection refused or failed")
	return len(p), nil
}
