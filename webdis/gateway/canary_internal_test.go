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

// The header a link asks for values on a stream with is the one the
// gateway reads.
func TestValuesHeaderIsTheLinks(t *testing.T) {
	if valuesHeader != webdis.ValuesHeader {
		t.Fatalf("the gateway reads %q, the link sends %q", valuesHeader, webdis.ValuesHeader)
	}
}
