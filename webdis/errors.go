package webdis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Kind tells what went wrong on the way to the remote Redis, so that callers
// (and operators reading the logs) can tell a refused certificate from a dead
// proxy without parsing messages.
type Kind int

const (
	KindUnknown     Kind = iota
	KindUnreachable      // no TCP connection to the proxy
	KindTLS              // the server's certificate did not verify, or the handshake failed
	KindCertRefused      // the proxy refused our client certificate (nginx answers 400, the gateway a TLS alert)
	KindForbidden        // Webdis refused the command (ACL, or MULTI/EXEC/...)
	KindUnavailable      // Webdis cannot reach its Redis (503)
	KindTooLarge         // the request body was over the proxy's limit (413)
	KindHTTP             // any other HTTP status
	KindBadReply         // a 200 whose body is not a RESP reply
	KindTimeout          // the request did not finish in time
)

var kindNames = [...]string{"unknown", "unreachable", "tls", "cert-refused", "forbidden", "unavailable", "too-large", "http", "bad-reply", "timeout"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failure of a request to Webdis (not an error reply of Redis,
// which is returned as redis.Error).
type Error struct {
	Kind   Kind
	Status int    // HTTP status, when there was a response
	URL    string // the remote, without credentials
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	s := e.URL + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err, or KindUnknown when err is not an *Error.
func KindOf(err error) Kind {
	var we *Error
	if errors.As(err, &we) {
		return we.Kind
	}
	return KindUnknown
}

// classifyTransport turns an error of http.Client.Do into an *Error.
func classifyTransport(url string, err error) *Error {
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		certInvalid x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
		alertErr    tls.AlertError
		opErr       *net.OpError
	)
	switch {
	case tlsVersionRefused(err):
		return &Error{Kind: KindTLS, URL: url, Msg: oldTLSMessage(err), Err: err}
	case errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &certInvalid), errors.As(err, &verifyErr):
		return &Error{Kind: KindTLS, URL: url, Msg: "the server's certificate was not accepted (check the link's ca file and the remote host name)", Err: err}
	case errors.As(err, &opErr) && opErr.Op == "remote error" && strings.Contains(opErr.Err.Error(), "certificate"):
		// A server that checks client certificates itself (the hub gateway)
		// refuses one with a TLS alert: "certificate required" (none sent,
		// or one of another CA, which Go does not send), "bad certificate"
		// (expired, or not verified).
		return &Error{Kind: KindCertRefused, URL: url, Msg: "the server refused the client certificate (TLS alert): it is missing, expired, or not signed by the CA the server trusts", Err: err}
	case errors.As(err, &recordErr), errors.As(err, &alertErr), errors.Is(err, http.ErrSchemeMismatch):
		return &Error{Kind: KindTLS, URL: url, Msg: "TLS handshake failed", Err: err}
	case isTimeout(err):
		return &Error{Kind: KindTimeout, URL: url, Msg: "request timed out", Err: err}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return &Error{Kind: KindUnreachable, URL: url, Msg: "cannot connect to the proxy", Err: err}
	}
	return &Error{Kind: KindUnreachable, URL: url, Msg: "request failed", Err: err}
}

// tlsVersionRefused says whether err is a handshake that failed because the
// server speaks no TLS version the client offers (1.2 and 1.3). A server
// that knows TLS 1.3 (or reads the supported_versions extension) answers the
// protocol_version alert, which crypto/tls returns as an unexported type in
// a net.OpError "remote error" (tls.AlertError on QUIC); an older one
// answers with its own version, which crypto/tls refuses with "server
// selected unsupported protocol version".
func tlsVersionRefused(err error) bool {
	var (
		opErr    *net.OpError
		alertErr tls.AlertError
	)
	const protocolVersion = 70 // the TLS alert protocol_version (RFC 8446, 6.2)
	switch {
	case errors.As(err, &alertErr) && alertErr == protocolVersion:
		return true
	case errors.As(err, &opErr) && opErr.Op == "remote error" && opErr.Err != nil &&
		opErr.Err.Error() == tls.AlertError(protocolVersion).Error():
		return true
	}
	return strings.Contains(err.Error(), selectedPrefix)
}

const selectedPrefix = "tls: server selected unsupported protocol version "

// oldTLSMessage names the version the server chose, when it said.
func oldTLSMessage(err error) string {
	version := "older than 1.2"
	if s := err.Error(); strings.Contains(s, selectedPrefix) {
		var v uint16
		if _, e := fmt.Sscanf(s[strings.Index(s, selectedPrefix)+len(selectedPrefix):], "%x", &v); e == nil && v != 0 {
			version = tls.VersionName(v)
		}
	}
	return "the hub (or the proxy in front of it) offers only an old TLS version (" + version + ")" +
		"; redisrepl requires TLS 1.2 or newer (nginx: ssl_protocols TLSv1.2 TLSv1.3;)"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closedByPeer says whether err is the peer closing the connection under
// a write or a read (a reset, a broken pipe).
func closedByPeer(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
