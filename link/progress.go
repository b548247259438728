package link

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// progressEvery is how often a long resync logs its progress; a terminal
// gets a bar redrawn every barEvery.
const (
	progressEvery = 5 * time.Second
	barEvery      = 200 * time.Millisecond
)

// progress counts a resync's work and reports it: keys compared and
// differing, the rate and, once the namespace's size is known from the
// previous resync, how far along it is and an ETA.
type progress struct {
	log             zerolog.Logger
	bar             io.Writer // a terminal, or nil
	name            string
	start, last     time.Time
	lastBar         time.Time
	expected        int // keys the previous resync compared; 0 = unknown
	scanned, differ int
}

func (p *progress) report() {
	now := time.Now()
	if p.bar != nil && now.Sub(p.lastBar) >= barEvery {
		p.lastBar = now
		p.draw(now, false)
	}
	if now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	rate := p.rate(now)
	ev := p.log.Info().Int("keys_compared", p.scanned).Int("keys_differing", p.differ).Int("keys_per_s", int(rate))
	if eta, ok := p.eta(rate); ok {
		ev = ev.Int("percent", p.percent()).Str("eta", eta.String())
	}
	ev.Msg("resync progress")
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.bar != nil && !p.lastBar.IsZero() {
		p.draw(time.Now(), true)
	}
}

func (p *progress) rate(now time.Time) float64 {
	s := now.Sub(p.start).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(p.scanned) / s
}

func (p *progress) percent() int {
	if p.expected <= 0 {
		return 0
	}
	return min(100, 100*p.scanned/p.expected)
}

func (p *progress) eta(rate float64) (time.Duration, bool) {
	if p.expected <= 0 || rate <= 0 {
		return 0, false
	}
	left := max(0, p.expected-p.scanned)
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second), true
}

// draw redraws the bar in place (\r), one line per link.
func (p *progress) draw(now time.Time, final bool) {
	const width = 30
	rate := p.rate(now)
	var b strings.Builder
	fmt.Fprintf(&b, "\r%s resync ", p.name)
	if p.expected > 0 {
		fill := width * p.percent() / 100
		fmt.Fprintf(&b, "[%s%s] %3d%% ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), p.percent())
	}
	fmt.Fprintf(&b, "%d keys compared, %d differing, %d keys/s", p.scanned, p.differ, int(rate))
	if eta, ok := p.eta(rate); ok && !final {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	b.WriteString("\x1b[K") // clear the rest of the line
	if final {
		b.WriteString("\n")
	}
	barMu.Lock()
	io.WriteString(p.bar, b.String())
	barMu.Unlock()
}

// barMu keeps the bars of several links from writing into each other.
var barMu sync.Mutex
