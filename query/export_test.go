package query

// Settled reports whether w has no re-check pending or under way, so that a
// test can count the commands of a quiet period.
func Settled(w *Watcher) bool { return w.settled() }
