package main

import (
	"bytes"
	"testing"

	"github.com/redisrepl/redisrepl/webdis/gateway"
)

// TestStatusPageHoldsTheSharedStylesheet: the page served at / carries the
// stylesheet it shares with the gateway's page, put in at its marker.
func TestStatusPageHoldsTheSharedStylesheet(t *testing.T) {
	if !bytes.Contains(statusPageHTML, []byte(statusCSSMarker)) {
		t.Fatalf("statuspage.html has no marker %q for the shared stylesheet", statusCSSMarker)
	}
	if bytes.Contains(statusPage, []byte(statusCSSMarker)) || !bytes.Contains(statusPage, []byte(gateway.StatusPageCSS)) {
		t.Error("the page served does not hold gateway.StatusPageCSS in place of its marker")
	}
}
