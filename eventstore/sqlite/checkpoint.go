package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Checkpoints copy committed pages from the WAL back into the database file;
// with synchronous=NORMAL they are also where the WAL is fsynced. Left to the
// writer (SQLite's automatic checkpoint, run by the connection that commits),
// every thousandth page or so one group commit pays for copying the pages and
// two fsyncs while every append of the batch waits. The store runs them on a
// connection of their own instead, beside the writer.
const (
	// checkpointPace is the least time between two background checkpoints, so
	// that a page rewritten by consecutive commits is copied once.
	checkpointPace = 20 * time.Millisecond
	// writerCheckpointPages is the WAL size, in pages, at which the writer
	// checkpoints by itself. It is the safety net for when the background
	// checkpoints fall behind: SQLite restarts the WAL from its start only
	// once all of it has been copied back, which a checkpoint racing with
	// continuous commits may never see.
	writerCheckpointPages = 8192
)

// checkpoints runs PASSIVE checkpoints on conn after commits, at most one per
// checkpointPace, until the store closes. A PASSIVE checkpoint neither waits
// for nor blocks the writer or readers; a failed one is logged and retried
// after the next commit.
func (s *Store) checkpoints(conn *sql.Conn) {
	defer close(s.checkpointStopped)
	pace := time.NewTimer(checkpointPace)
	defer pace.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.checkpointWanted:
		}
		var busy, log, copied int64
		err := conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied)
		if err != nil {
			s.cfg.Logger.Warn("sqlite event store: checkpoint failed", "path", s.path, "error", err)
		}
		pace.Reset(checkpointPace)
		select {
		case <-s.done:
			return
		case <-pace.C:
		}
	}
}

// wantCheckpoint asks the checkpointer for a checkpoint, without waiting.
func (s *Store) wantCheckpoint() {
	select {
	case s.checkpointWanted <- struct{}{}:
	default:
	}
}
