package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redisrepl/redisrepl/config"
	"github.com/redisrepl/redisrepl/webdis/pki"
)

// descCertExpiry is when each certificate file of a link expires (the
// earliest certificate of the file), read from the files at scrape time so
// that a renewal in place shows at once. An unreadable file has no series:
// /healthz and /status report it.
var descCertExpiry = desc("certificate_expiry_timestamp_seconds",
	"When the earliest certificate of each certificate or CA file of a link expires (Unix time).", "role", "file")

// certFiles are a link's certificate files by role (the config field).
func certFiles(l config.Link) [][2]string {
	out := [][2]string{{"cert", l.Cert}, {"ca", l.CA}}
	if l.LocalCert != "" {
		out = append(out, [2]string{"local_cert", l.LocalCert})
	}
	if l.LocalCA != "" {
		out = append(out, [2]string{"local_ca", l.LocalCA})
	}
	return out
}

// collectCertExpiry sends the expiry of every certificate file of the
// links of v, each file read once per scrape.
func collectCertExpiry(v serviceView, ch chan<- prometheus.Metric) {
	read := map[string]float64{} // path: expiry, or -1 when unreadable
	for _, l := range v.links {
		for _, f := range certFiles(l.cfg) {
			role, path := f[0], f[1]
			if path == "" {
				continue
			}
			at, ok := read[path]
			if !ok {
				at = -1
				if t, err := pki.EarliestExpiry(path); err == nil {
					at = float64(t.Unix())
				}
				read[path] = at
			}
			if at >= 0 {
				ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, at, l.cfg.Name, role, path)
			}
		}
	}
}
