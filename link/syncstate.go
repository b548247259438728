package link

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// In direction both, deciding which side changed a key needs the state last
// synced (dedup.Decide), and that must survive a restart of redisrepl, or a
// key deleted on one side while the link was down would come back from the
// other. The dedup table is saved to the link's state file every
// saveStateEvery when it changed, and when the link stops.

const saveStateEvery = 10 * time.Second

// StateFile is where the link keeps its sync state: state_file, else
// $STATE_DIRECTORY (systemd's StateDirectory=) or /var/lib/redisrepl, then
// "<name>.state".
func (l *Link) StateFile() string {
	if l.cfg.StateFile != "" {
		return l.cfg.StateFile
	}
	dir := os.Getenv("STATE_DIRECTORY")
	if dir == "" {
		dir = "/var/lib/redisrepl"
	}
	return filepath.Join(dir, l.cfg.Name+".state")
}

func (l *Link) loadSyncState() {
	path := l.StateFile()
	err := l.synced.Load(path)
	switch {
	case err == nil:
		l.log.Info().Str("file", path).Int("keys", l.synced.Len()).Msg("sync state loaded")
	case errors.Is(err, os.ErrNotExist):
		l.log.Info().Str("file", path).Msg("no sync state yet: keys that differ at the first resync follow the conflict policy")
	default:
		l.fail(err, "load sync state (keys that differ at the first resync follow the conflict policy)")
	}
	l.savedChanges = l.synced.Changes()
}

func (l *Link) saveSyncState() {
	n := l.synced.Changes()
	if n == l.savedChanges {
		return
	}
	if err := l.synced.Save(l.StateFile()); err != nil {
		l.fail(err, "save sync state")
		return
	}
	l.savedChanges = n
}

func (l *Link) saveSyncStateLoop(ctx context.Context) {
	t := time.NewTicker(saveStateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.saveSyncState()
		}
	}
}
