package gateway

import (
	"errors"
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
	w.Header().Set("Accept-Encoding", "gzip") // gzip.go
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
	if ok, status := g.admitConn(w, r, t); !ok {
		return status, "", 0, 0
	}
	uri, ok := g.strip(r.RequestURI)
	if !ok {
		return g.empty(w, http.StatusNotFound), "", 0, 0
	}
	if ok, wait := t.cmds.take(1); !ok {
		return g.throttled(w, t, wait), "", 0, 0
	}
	if ok, wait := t.bytes.take(0); !ok {
		return g.throttled(w, t, wait), "", 0, 0
	}
	var body []byte
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut:
		var status int
		if body, status = g.body(w, r, t, b); status != 0 {
			return status, "", len(b.in), 0
		}
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
	t.bytes.charge(float64(in))
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
	var reply any
	if e := guardArgs(&c, &t.cfg.Limits); e != nil {
		t.m.refused(reasonLimit)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", name).Str("reason", reasonLimit).Msg("refused")
		reply = *e
	} else {
		// A tenant's requests past max_requests, or past the gateway's
		// max_total_requests, wait in its queue for a slot, up to
		// slotWait; then 429 (fairqueue.go).
		if !g.queue.acquire(r.Context(), t.queue, slotWait) {
			if r.Context().Err() != nil {
				return g.empty(w, http.StatusServiceUnavailable), name, in, 0
			}
			return g.throttled(w, t, time.Second), name, in, 0
		}
		reply, err = g.run(r, t, k, &c, b, in)
		g.queue.release(t.queue)
		if err != nil {
			if r.Context().Err() == nil {
				g.log.Warn().Err(err).Str("tenant", t.cfg.Name).Str("cmd", name).Msg("hub Redis unavailable")
			}
			return g.empty(w, http.StatusServiceUnavailable), name, in, 0
		}
	}
	if re, ok := reply.(redis.Error); ok && isACLRefusal(re) {
		// Redis refused a key or a channel under the tenant's user.
		t.m.refused(reasonACL)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", name).Str("reason", reasonACL).Msg("refused")
	}
	if replySize(reply) > t.cfg.Limits.MaxReplyBytes {
		t.m.refused(reasonLimit)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", name).Str("reason", reasonLimit).Msg("reply refused")
		reply = limitError("max_reply_bytes", t.cfg.Limits.MaxReplyBytes)
	}
	if acceptsGzip(r) && replySize(reply) >= gzipMinBytes {
		zw := newGzipResponse(w)
		defer zw.Close()
		w = zw
	}
	status, out = g.reply(w, &c, reply, b, func(n int) { t.bytes.pace(float64(n)) })
	return status, name, in, out
}

// slotWait bounds the wait of a request for one of its tenant's
// max_requests slots.
const slotWait = 5 * time.Second

// throttled answers 429 with Retry-After: the tenant is over its rate.
func (g *Gateway) throttled(w http.ResponseWriter, t *tenant, wait time.Duration) int {
	t.m.refused(reasonThrottled)
	g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonThrottled).Msg("refused")
	retryAfter(w, wait)
	return g.empty(w, http.StatusTooManyRequests)
}

// reply writes v in c's format, at the pace of pace, streamed: a reply that fits in one buffer
// goes with its Content-Length, a larger one chunked as it is encoded, so
// that the gateway holds O(spillAt) of encoded reply whatever its size.
// It returns the status and the bytes written.
func (g *Gateway) reply(w http.ResponseWriter, c *command, v any, b *buffers, pace func(int)) (status, n int) {
	if c.format == fmtCustom {
		switch v.(type) {
		case nil: // as Webdis
			return g.empty(w, http.StatusNotFound), 0
		case []any:
			return g.empty(w, http.StatusBadRequest), 0
		}
	}
	w.Header()["Content-Type"] = []string{c.mime}
	sw := &startWriter{w: w}
	o := &out{b: b.out[:0], w: sw, pace: pace}
	switch c.format {
	case fmtRaw:
		o.raw(v, false)
	case fmtJSON:
		o.json(c.args[0], v)
	default:
		if s, ok := v.([]byte); ok {
			o.bytes(s)
		} else {
			o.b, _ = appendCustom(o.b, v)
		}
	}
	if !sw.started {
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(o.b))}
		sw.last = true
	}
	o.flush()
	b.out = o.b
	return http.StatusOK, o.n
}

// startWriter writes the status line before the first bytes, and gives a
// reply sent in parts a deadline: a client that stops reading must not
// hold us.
type startWriter struct {
	w       http.ResponseWriter
	started bool
	last    bool // the first write is the whole reply
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		if !s.last {
			http.NewResponseController(s.w).SetWriteDeadline(time.Now().Add(bodyTimeout))
		}
		s.w.WriteHeader(http.StatusOK)
	}
	return s.w.Write(p)
}

// replySize is the bytes of v's strings, a bound of its encoded size
// before escaping.
func replySize(v any) int64 {
	switch v := v.(type) {
	case []byte:
		return int64(len(v))
	case []any:
		var n int64
		for _, e := range v {
			n += replySize(e) + 4
		}
		return n
	}
	return 0
}

// body reads a POST or PUT body: within body_timeout for the whole of it,
// growing its buffer as bytes come (never to a declared Content-Length),
// and within the gateway's max_body_memory. On failure it answers
// (413, 503, 400), closes the connection, and returns the status.
func (g *Gateway) body(w http.ResponseWriter, r *http.Request, t *tenant, b *buffers) ([]byte, int) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout))
	var err error
	b.in, err = readBody(b.in[:0], r, g.cfg.MaxBodyBytes, &g.bodies)
	if err == nil {
		// The deadline is lifted once the body is in: net/http's own read
		// of the connection is how a stream learns that its client left.
		rc.SetReadDeadline(time.Time{})
		return b.in, 0
	}
	// The rest of the body is not read: the connection goes (net/http
	// would otherwise drain it, with no deadline of ours).
	w.Header().Set("Connection", "close")
	switch err {
	case errTooLarge:
		t.m.refused(reasonBody)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonBody).Msg("refused")
		return nil, g.empty(w, http.StatusRequestEntityTooLarge)
	case errNoMemory:
		t.m.refused(reasonBusy)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("reason", reasonBusy).Msg("refused")
		retryAfter(w, time.Second)
		return nil, g.empty(w, http.StatusServiceUnavailable)
	}
	if err == errEncoding {
		g.log.Warn().Str("tenant", t.cfg.Name).Str("content_encoding", r.Header.Get("Content-Encoding")).Msg("request body in a coding the gateway does not take")
		return nil, g.empty(w, http.StatusUnsupportedMediaType)
	}
	g.log.Info().Err(err).Str("tenant", t.cfg.Name).Msg("request body not received")
	return nil, g.empty(w, http.StatusBadRequest)
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

// readBody appends r's body to buf, holding in budget the bytes of its
// buffer while it reads (a body that is in is bounded by its tenant's
// max_requests).
func readBody(buf []byte, r *http.Request, limit int64, budget *bodyBudget) ([]byte, error) {
	if r.ContentLength > limit {
		return buf, errTooLarge
	}
	body, done, err := bodyReader(r) // gzip.go
	if err != nil {
		return buf, err
	}
	defer done()
	reserved := int64(0)
	defer func() { budget.release(reserved) }()
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grows by half: never to a size only declared
		}
		// Small bodies are not counted: a flood of large ones must not stop
		// the requests of everyone else.
		if int64(cap(buf)) > reserved && cap(buf) > smallBody {
			if !budget.reserve(int64(cap(buf)) - reserved) {
				return buf, errNoMemory
			}
			reserved = int64(cap(buf))
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
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

// smallBody is the size below which a body is not counted in
// max_body_memory.
const smallBody = 64 << 10

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

var (
	errTooLarge = &tooLarge{}
	errNoMemory = errors.New("max_body_memory reached")
)

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
func (g *Gateway) run(r *http.Request, t *tenant, k kind, c *command, b *buffers, in int) (any, error) {
	ctx := r.Context()
	own := false
	switch k {
	case kScan:
		return g.scan(r, t, c)
	case kKeys:
		return g.keys(r, t, c)
	case kInfo:
		reply, err := g.adminDo(r, "INFO", "server")
		if s, ok := reply.([]byte); ok {
			return filterInfo(s), err
		}
		return reply, err
	case kConfigGet:
		// A link asks before it subscribes and when its events lapsed:
		// make sure they are on (an operator may have turned them off).
		g.ensureKeyspaceEvents(ctx)
		return g.adminDo(r, "CONFIG", "GET", "notify-keyspace-events")
	case kEval:
		if isScanScript(c.args) {
			return g.scanScript(r, t, c)
		}
		own = t.checkScript(c) == scriptOwn
		if own && g.backend != nil {
			return ownScriptOnCluster, nil // cluster_route.go
		}
	}
	conn, err := g.tenantConn(ctx, t)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	e, err := guardSizes(conn, c, &t.cfg.Limits)
	for isBusy(err) && ctx.Err() == nil {
		time.Sleep(busyRetry)
		e, err = guardSizes(conn, c, &t.cfg.Limits)
	}
	if err != nil || e != nil {
		if e != nil {
			t.m.refused(reasonLimit)
			g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", c.name()).Str("reason", reasonLimit).Msg("refused")
			return *e, nil
		}
		return nil, err
	}
	e, quotaDone, err := t.quotaCheck(conn, c, in)
	if err != nil {
		return nil, err
	}
	if e != nil {
		t.m.refused(reasonQuota)
		g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", c.name()).Str("reason", reasonQuota).Msg("refused")
		return *e, nil
	}
	b.iargs = b.iargs[:0]
	for _, a := range c.args[1:] {
		b.iargs = append(b.iargs, a)
	}
	var done chan struct{}
	var killed chan bool
	if own {
		done, killed = make(chan struct{}), make(chan bool, 1)
		go func() { killed <- g.watchScript(t.cfg.Limits.ScriptTime, done) }()
	}
	// Do, not DoContext (a goroutine per call): the commands served do not
	// block, and commandTimeout bounds the wait.
	reply, err := doRetryBusy(ctx, conn, string(c.args[0]), b.iargs...)
	if own {
		close(done)
		if <-killed {
			t.m.refused(reasonKilled)
			g.log.Warn().Str("tenant", t.cfg.Name).Str("cmd", c.name()).Str("reason", reasonKilled).
				Dur("script_time", t.cfg.Limits.ScriptTime).Msg("script killed")
		}
	}
	quotaDone(err)
	if re, ok := err.(redis.Error); ok {
		return re, nil
	}
	return reply, err
}

func (g *Gateway) adminDo(r *http.Request, cmd string, args ...any) (any, error) {
	if g.backend != nil {
		return g.backend.adminDo(r.Context(), cmd, args...)
	}
	conn, err := g.admin.GetContext(r.Context())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	reply, err := doRetryBusy(r.Context(), conn, cmd, args...)
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
