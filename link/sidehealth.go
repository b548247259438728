package link

import (
	"sync"
	"time"
)

// A side's identity, and what the link knows of its health (health.go,
// docs/ARCHITECTURE.md, "Health"), with the timings of the proofs.

const (
	canaryEvery   = 2 * time.Second
	canaryTimeout = 3500 * time.Millisecond
	canaryTTLms   = "30000"
	probeEvery    = 2 * time.Second
	probeTimeout  = 4 * time.Second

	// lapsedRetryTicks: while a side's events lapse, every this many
	// canaries (30 s) the link resyncs and tries to enable them again.
	lapsedRetryTicks = 15
)

// sideHealth is what the link knows of one side's liveness.
type sideHealth struct {
	mu         sync.Mutex
	listened   bool      // the link subscribes to this side's events
	unseen     time.Time // a canary written and its event not seen yet; zero if none
	lastProof  time.Time // when events were last proved to flow
	lapsed     bool      // events do not flow (the canary, or the notification setting)
	streamDead bool      // the subscription is broken and being made again
	canary     bool      // the subscription carries the canary's pattern
	lapses     int64
	down       bool // the side does not answer the probe
	// Why events cannot be proved, "" if they can: the canary key or the
	// notification setting cannot be written or read, or the canary's
	// channel cannot be subscribed to.
	unproven, channelRefused string
}

// SideStatus is what /status shows of one side.
type SideStatus struct {
	Side          string    `json:"side"`
	Answering     bool      `json:"answering"`
	EventsFlowing *bool     `json:"events_flowing,omitempty"` // nil: not listened to, or not provable
	LastProof     time.Time `json:"last_event_proof,omitzero"`
	Lapses        int64     `json:"event_lapses"`
	Unproven      string    `json:"events_unproven,omitempty"`
}

// why is why events cannot be proved, "" if they can; h.mu is held.
func (h *sideHealth) why() string {
	if h.channelRefused != "" {
		return h.channelRefused
	}
	return h.unproven
}

func (h *sideHealth) status(s Side) SideStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := SideStatus{Side: s.String(), Answering: !h.down, LastProof: h.lastProof, Lapses: h.lapses, Unproven: h.why()}
	if h.listened && (st.Unproven == "" || h.streamDead) {
		ok := !h.lapsed && !h.streamDead
		st.EventsFlowing = &ok
	}
	return st
}

// Side names one side of a link.
type Side int

const (
	LocalSide Side = iota
	RemoteSide
)

// String is the side's name in logs, metrics and /status.
func (s Side) String() string {
	if s == RemoteSide {
		return "remote"
	}
	return "local"
}

// changed is the reason a key is dirty when this side reports it.
func (s Side) changed() uint8 {
	if s == RemoteSide {
		return changedRemote
	}
	return changedLocal
}
