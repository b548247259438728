package link

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/redisrepl/redisrepl/dedup"
)

// In direction both, deciding which side changed a key needs the state last
// synced (dedup.Decide), and that must survive a restart of redisrepl, or a
// key deleted on one side while the link was down would come back from the
// other. The dedup table is kept in the link's state file (a snapshot) and a
// journal beside it: every change is appended to the journal and synced
// every dedup.JournalEvery, so a crash (kill -9, power loss) forgets at most
// the changes of the last 50 ms or so. The journal is folded into the
// snapshot when it grows past compactJournalAt and when the link stops.

const saveStateEvery = 10 * time.Second

// compactJournalAt is how large the journal may grow, in bytes, before it is
// folded into the snapshot: twice the snapshot's size, or at least 16 MiB.
func compactJournalAt(keys int) int64 { return max(16<<20, 2*64*int64(keys)) }

// StateFile is where the link keeps its sync state: state_file, else
// $STATE_DIRECTORY (systemd's StateDirectory=) or /var/lib/redisrepl, then
// "<name>.state". The journal is the same path with ".journal".
func (l *Link) StateFile() string {
	if l.cfg.StateFile != "" {
		return l.cfg.StateFile
	}
	return filepath.Join(StateDir(), l.cfg.Name+".state")
}

func (l *Link) journalFile() string { return l.StateFile() + ".journal" }

// StateDir is where sync states are kept when state_file is not set:
// $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/redisrepl.
func StateDir() string {
	if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
		return dir
	}
	return "/var/lib/redisrepl"
}

// lockState makes the sync state this link's (dedup.LockState): a state
// held by another process, or another link, is an error, since both would
// save over each other's files. A lock that cannot be taken for another
// reason (a directory that cannot be written) is reported, and the link
// runs: the state files could not be saved there either.
func (l *Link) lockState() error {
	lk, err := dedup.LockState(l.StateFile())
	var held *dedup.HeldError
	switch {
	case errors.As(err, &held):
		return fmt.Errorf("link %q: %w", l.cfg.Name, err)
	case err != nil:
		l.log.Warn().Err(err).Str("file", l.StateFile()).Msg("cannot lock the sync state: another process on the same state would not be refused")
	}
	l.persist.lock = lk
	return nil
}

func (l *Link) loadSyncState() {
	path := l.StateFile()
	err := l.synced.Load(path, l.journalFile())
	switch {
	case err == nil:
		l.log.Info().Str("file", path).Int("keys", l.synced.Len()).Msg("sync state loaded")
	case errors.Is(err, os.ErrNotExist):
		l.log.Info().Str("file", path).Msg("no sync state yet: keys that differ at the first resync follow the conflict policy")
	default:
		// Unreadable (damaged, or an I/O error, too many open files...):
		// moved aside rather than overwritten by the empty table, so that
		// nothing of it is destroyed; the link goes on without it.
		l.fail(err, "load sync state (keys that differ at the first resync follow the conflict policy)")
		if !l.setAsideSyncState() {
			l.persist.off = true
			l.fail(errors.New("the sync state files can be neither read nor moved aside: not saving the sync state in this run, so as not to overwrite them"), "sync state")
			return
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		l.fail(err, "sync state directory")
	}
	// The journal replayed is folded into a new snapshot first, so that the
	// journal opened next starts empty.
	if err := l.synced.Save(path); err != nil {
		l.fail(err, "save sync state")
	} else if err := os.Truncate(l.journalFile(), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.fail(err, "empty sync journal")
	}
	if err := l.synced.OpenJournal(l.journalFile()); err != nil {
		l.fail(err, "open sync journal (the sync state is then saved every 10 s only)")
	}
	l.persist.saved = l.synced.Changes()
}

// setAsideSyncState renames the state file and its journal to
// "<name>.unreadable-<unix time>"; false if one of them exists and cannot be.
func (l *Link) setAsideSyncState() bool {
	suffix := fmt.Sprintf(".unreadable-%d", time.Now().Unix())
	ok := true
	for _, p := range []string{l.StateFile(), l.journalFile()} {
		if err := os.Rename(p, p+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.fail(err, "move the unreadable sync state aside")
			ok = false
		} else if err == nil {
			l.log.Warn().Str("file", p+suffix).Msg("unreadable sync state moved aside")
		}
	}
	return ok
}

// saveSyncState folds the journal into the snapshot when it changed, and
// says whether the state on disk is then whole.
func (l *Link) saveSyncState() bool {
	if l.persist.off {
		return false
	}
	n := l.synced.Changes()
	if n == l.persist.saved {
		return true
	}
	if err := l.synced.Checkpoint(l.StateFile()); err != nil {
		l.fail(err, "save sync state")
		return false
	}
	l.persist.saved = n
	return true
}

// saveSyncStateLoop syncs the journal every dedup.JournalEvery and folds it
// into the snapshot when it grows large (or, without a journal, saves the
// snapshot every saveStateEvery).
func (l *Link) saveSyncStateLoop(ctx context.Context) {
	if l.persist.off {
		return
	}
	flush := time.NewTicker(dedup.JournalEvery)
	defer flush.Stop()
	save := time.NewTicker(saveStateEvery)
	defer save.Stop()
	failing := false // a flush failed: only a checkpoint clears it
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			if err := l.synced.Flush(); err != nil {
				if !failing {
					l.fail(err, "sync journal (the sync state is saved whole every 10 s until it works again)")
				}
				failing = true
			}
		case <-save.C:
			if failing || !l.synced.Journaling() || l.synced.JournalSize() > compactJournalAt(l.synced.Len()) {
				if l.saveSyncState() {
					failing = false
				}
			}
		}
	}
}

// closeSyncState saves the snapshot and closes the journal, at stop.
func (l *Link) closeSyncState() {
	l.saveSyncState()
	if err := l.synced.CloseJournal(); err != nil {
		l.fail(err, "close sync journal")
	}
}
