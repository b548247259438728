package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"net/http"

	"github.com/redisrepl/redisrepl/webdis/gateway"
)

// statusPage is the page served at GET /: one self-contained HTML file (no
// external script, style or font, so it works in a lab without Internet
// access) that reads /status and /status/history and refreshes itself.
//
// Its shared rules come from gateway.StatusPageCSS, put in at the marker.
//
//go:embed statuspage.html
var statusPageHTML []byte

var statusPage = bytes.Replace(statusPageHTML, []byte(statusCSSMarker), []byte(gateway.StatusPageCSS), 1)

const statusCSSMarker = "/* the shared stylesheet (webdis/gateway/statuspage.css) is put here */\n"

func serveStatusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	w.Write(statusPage)
}

// serve is /status/history: per link, the points of the last
// historyLen intervals, oldest first.
func (h *history) serve(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(h.snapshot())
}
