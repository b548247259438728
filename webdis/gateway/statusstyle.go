package gateway

import (
	_ "embed"
	"html/template"
)

// StatusPageCSS is the stylesheet both status pages share, the gateway's
// (statuspage.go) and the service's (cmd/redisrepl/statuspage.html), each
// adding the rules of its own states. It lives here because the service
// imports the gateway, not the other way round.
//
//go:embed statuspage.css
var StatusPageCSS string

func statusPageCSS() template.CSS { return template.CSS(StatusPageCSS) }
