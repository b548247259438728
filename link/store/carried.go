package store

import "fmt"

// Values on the hub's stream (docs/ARCHITECTURE.md, "Values on the hub's
// stream"): a hub that offers it (the gateway) sends with each keyspace
// event the key's state as readScript returns it, read after the event.

// ValuesRequest is what the store asks a hub for with each event of its
// stream (webdis.ValuesHeader): readScript's SHA and its limits for one
// key. "" when the store does not run scripts (a hub that refused them
// would refuse the gateway's read too).
func (s *Store) ValuesRequest() string {
	if s.Path() != PathEval {
		return ""
	}
	return fmt.Sprintf("%s %d %d %d", readScript.SHA, s.MaxElems, s.MaxBytes, s.MaxBytes)
}

// ParseValue decodes the state of key carried by an event (readScript's
// reply for that key alone). ok is false for a reply that does not parse,
// or a key the hub did not read whole (Big or Deferred): the link reads
// those itself.
func (s *Store) ParseValue(key []byte, v any) (st State, ok bool) {
	states, err := parseStates([][]byte{key}, v)
	if err != nil || len(states) != 1 || states[0].Big || states[0].Deferred {
		return State{}, false
	}
	return states[0], true
}
