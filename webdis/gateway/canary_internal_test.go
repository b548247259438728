package gateway

import (
	"testing"

	"github.com/redisrepl/redisrepl/webdis"
)

// The header the gateway sets on its streams is the one the link reads.
func TestSeveralPatternsHeaderIsTheLinks(t *testing.T) {
	if severalPatternsHeader != webdis.SeveralPatternsHeader {
		t.Fatalf("the gateway says %q, the link reads %q", severalPatternsHeader, webdis.SeveralPatternsHeader)
	}
}
