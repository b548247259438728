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
	return c.Stream(ctx, patterns, "", func(s StreamInfo) {
		if onSubscribed != nil {
			onSubscribed(s.Several)
		}
	}, func(e Event) { onMessage(e.Channel, e.Data) })
}

// ValuesHeader, in a PSUBSCRIBE request, asks the hub to send each
// keyspace event with the key's state, as "sha max_elems max_bytes
// max_batch_bytes": the link's read script and its limits (link/store). A
// hub that does so (the gateway) answers with the header set to "on", and
// a message of the stream then has a fifth field, the script's reply for
// the key, when the hub could read it. Webdis ignores the header.
const ValuesHeader = "X-Redisrepl-Values"

// StreamInfo is what the hub said of a stream once every pattern was
// confirmed.
type StreamInfo struct {
	Several bool // it takes several patterns per stream (SeveralPatternsHeader)
	Values  bool // its events carry the key's state (ValuesHeader)
}

// Event is one message of a stream: a channel (a key's) and an event name,
// and Value, the key's state as the read script named by ValuesHeader
// returns it, when the hub sent one (nil otherwise).
type Event struct {
	Channel, Data []byte
	Value         any
}

// Stream is SubscribeAll asking, when values is not "", for the key's
// state with each event (ValuesHeader).
func (c *Client) Stream(ctx context.Context, patterns [][]byte, values string, onSubscribed func(StreamInfo), onEvent func(Event)) error {
	body := AppendCommand(nil, append([][]byte{[]byte("PSUBSCRIBE")}, patterns...)...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &Error{Kind: KindUnknown, URL: c.display, Msg: "cannot build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if values != "" {
		req.Header.Set(ValuesHeader, values)
	}
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
	info := StreamInfo{Several: resp.Header.Get(SeveralPatternsHeader) == "several",
		Values: values != "" && resp.Header.Get(ValuesHeader) == "on"}
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
		var value any
		if a, ok := v.([]any); ok && info.Values && len(a) == 5 {
			v, value = a[:4], a[4]
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
				onSubscribed(info)
			}
		case "pmessage":
			if len(msg) != 4 {
				return &Error{Kind: KindBadReply, URL: c.display, Msg: fmt.Sprintf("pmessage with %d fields", len(msg))}
			}
			onEvent(Event{Channel: msg[2], Data: msg[3], Value: value})
		}
	}
}
