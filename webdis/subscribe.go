package webdis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gomodule/redigo/redis"
)

// Subscribe sends PSUBSCRIBE pattern through Webdis and reads the stream it
// keeps open (raw RESP arrays, one per message, binary-safe), calling
// onSubscribed once Webdis confirms and onMessage for each message. It
// returns when ctx is done (nil) or the stream fails or ends (an error: the
// proxy or Webdis closed it, or it was cut). The stream holds a connection
// of its own, not one of the MaxConns of requests, and one Redis connection
// on the hub.
// maxEventBytes bounds one message of an event stream: key names of up to
// 64 MiB pass (a key name of 1 MiB, which cannot be replicated through a
// hub of nginx's default limit, must not cut every other key's events).
const maxEventBytes = 64 << 20

func (c *Client) Subscribe(ctx context.Context, pattern []byte, onSubscribed func(), onMessage func(channel, data []byte)) error {
	return c.SubscribeAll(ctx, [][]byte{pattern}, func(bool) {
		if onSubscribed != nil {
			onSubscribed()
		}
	}, onMessage)
}

// SeveralPatternsHeader, with the value "several" in the response to a
// PSUBSCRIBE, says that the hub takes several patterns per stream (the
// gateway does). Webdis 0.1.9 takes one (docs/ARCHITECTURE.md, "Facts
// about Webdis"): several must never be sent to a hub that did not say so.
const SeveralPatternsHeader = "X-Redisrepl-Patterns"

// SubscribeAll is Subscribe of several patterns on one stream, calling
// onSubscribed once every one is confirmed, with whether the hub said it
// takes several patterns per stream (SeveralPatternsHeader).
func (c *Client) SubscribeAll(ctx context.Context, patterns [][]byte, onSubscribed func(several bool), onMessage func(channel, data []byte)) error {
	body := AppendCommand(nil, append([][]byte{[]byte("PSUBSCRIBE")}, patterns...)...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &Error{Kind: KindUnknown, URL: c.display, Msg: "cannot build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.streams.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return classifyTransport(c.display, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return statusError(c.display, resp.StatusCode, data)
	}
	// Messages are a channel (a key) and an event name: no length in the
	// stream may make the reader allocate more than maxEventBytes. A longer
	// key name cuts the stream (and the link resyncs).
	several := resp.Header.Get(SeveralPatternsHeader) == "several"
	r := NewReplyReader(resp.Body, maxEventBytes)
	confirmed := 0
	for {
		v, err := r.Read()
		if ctx.Err() != nil {
			return nil
		}
		if err == io.EOF {
			return &Error{Kind: KindUnreachable, URL: c.display, Msg: "the event stream was closed by the server"}
		}
		if err != nil {
			if errors.Is(err, errTruncated) {
				return &Error{Kind: KindUnreachable, URL: c.display, Msg: "the event stream was cut", Err: err}
			}
			return &Error{Kind: KindBadReply, URL: c.display, Msg: "bad event stream", Err: err}
		}
		msg, err := redis.ByteSlices(v, nil)
		if err != nil || len(msg) == 0 {
			if e, ok := v.(redis.Error); ok {
				return &Error{Kind: KindForbidden, URL: c.display, Msg: "PSUBSCRIBE refused", Err: e}
			}
			return &Error{Kind: KindBadReply, URL: c.display, Msg: fmt.Sprintf("unexpected event message %T", v)}
		}
		switch string(msg[0]) {
		case "psubscribe":
			if confirmed++; confirmed == len(patterns) && onSubscribed != nil {
				onSubscribed(several)
			}
		case "pmessage":
			if len(msg) != 4 {
				return &Error{Kind: KindBadReply, URL: c.display, Msg: fmt.Sprintf("pmessage with %d fields", len(msg))}
			}
			onMessage(msg[2], msg[3])
		}
	}
}
