package eventstore

// SharedLogMembers is the number of subscriptions sharing s's reader, for
// tests that must know a subscription has joined before they go on.
func SharedLogMembers(s *SharedLog) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.convoy == nil {
		return 0
	}
	return len(s.convoy.members)
}
