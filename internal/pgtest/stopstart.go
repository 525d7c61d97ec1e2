package pgtest

import "fmt"

// Stop stops the private server at once (immediate shutdown: sessions are
// cut, as when a host dies), keeping its data for Start.
func (s *Private) Stop() error {
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Start starts a stopped private server again on the same port.
func (s *Private) Start() error {
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", s.log(), "-o", s.options(), "-w", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}
