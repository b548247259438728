package link

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// replayConn is a net.Conn whose reads replay one message forever.
type replayConn struct {
	net.Conn
	msg []byte
	r   bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.r.Len() == 0 {
		c.r.Reset(c.msg)
	}
	return c.r.Read(p)
}
func (c *replayConn) SetReadDeadline(time.Time) error { return nil }
func (c *replayConn) Close() error                    { return nil }

// pmessage is a keyspace event as Redis sends it to a pattern subscriber.
var pmessage = []byte("*4\r\n$8\r\npmessage\r\n$22\r\n__keyspace@0__:burst:*\r\n$25\r\n__keyspace@0__:burst:1234\r\n$3\r\nset\r\n")

// BenchmarkReceiveEvent is the decoding of one local keyspace event,
// receiveEvent against redigo's PubSubConn.Receive, which it replaced.
func BenchmarkReceiveEvent(b *testing.B) {
	b.Run("receiveEvent", func(b *testing.B) {
		c := redis.NewConn(&replayConn{msg: pmessage}, 0, 0)
		b.ReportAllocs()
		for b.Loop() {
			if kind, ch, err := receiveEvent(c, time.Minute); err != nil || kind != "pmessage" || len(ch) != 25 {
				b.Fatal(kind, ch, err)
			}
		}
	})
	b.Run("PubSubConn", func(b *testing.B) {
		psc := redis.PubSubConn{Conn: redis.NewConn(&replayConn{msg: pmessage}, 0, 0)}
		b.ReportAllocs()
		for b.Loop() {
			if m, ok := psc.ReceiveWithTimeout(time.Minute).(redis.Message); !ok || len(m.Channel) != 25 {
				b.Fatal(m)
			}
		}
	})
}
