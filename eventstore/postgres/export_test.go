package postgres

// SetBeforeCommit makes the writer of s call f between a batch's last
// statement and its COMMIT, so tests can hold transactions open on purpose.
// Call it before the first append.
func SetBeforeCommit(s *Store, f func()) { s.w.beforeCommit = f }

// Commits returns how many transactions the writer of s committed.
func Commits(s *Store) uint64 { return s.w.commits.Load() }
