package link

import (
	"time"

	"github.com/rs/zerolog"
)

// progressEvery is how often a long resync reports.
const progressEvery = 5 * time.Second

// progress counts a resync's work and logs it every progressEvery.
type progress struct {
	log             zerolog.Logger
	start, last     time.Time
	scanned, differ int
}

func (p *progress) report() {
	now := time.Now()
	if now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	rate := float64(p.scanned) / now.Sub(p.start).Seconds()
	p.log.Info().Int("keys_scanned", p.scanned).Int("keys_differing", p.differ).
		Float64("keys_per_s", float64(int(rate))).Msg("resync progress")
}
