package commandtest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/eventline/eventline/command"
)

// Scenario is one given/when/then case for a Decider. Build it with For, then
// Given and When, and finish it with one of the Then methods.
type Scenario[S, C, E any] struct {
	t       testing.TB
	decider command.Decider[S, C, E]
	given   []E
	cmd     C
	hasCmd  bool
}

// For starts a scenario for decider, reporting failures to t.
func For[S, C, E any](t testing.TB, decider command.Decider[S, C, E]) *Scenario[S, C, E] {
	return &Scenario[S, C, E]{t: t, decider: decider}
}

// Given sets the entity's past events. Without Given, the entity is new.
func (s *Scenario[S, C, E]) Given(events ...E) *Scenario[S, C, E] {
	s.given = append(s.given, events...)
	return s
}

// When sets the command to decide.
func (s *Scenario[S, C, E]) When(cmd C) *Scenario[S, C, E] {
	s.cmd, s.hasCmd = cmd, true
	return s
}

// Then asserts that the command is accepted and decides exactly want, in
// order (compared with reflect.DeepEqual). Then() with no events asserts that
// the command is accepted and changes nothing.
func (s *Scenario[S, C, E]) Then(want ...E) {
	s.t.Helper()
	got, err, ok := s.run()
	if !ok {
		return
	}
	if err != nil {
		s.fail("want events, Decide returned error: %v\nwant:\n%s", err, indent(lines(want)))
		return
	}
	if !equalEvents(got, want) {
		s.fail("decided events differ (-want +got):\n%s", Diff(lines(want), lines(got)))
	}
}

// ThenError asserts that Decide refuses the command with an error matching
// target (errors.Is).
func (s *Scenario[S, C, E]) ThenError(target error) {
	s.t.Helper()
	got, err, ok := s.run()
	if !ok {
		return
	}
	switch {
	case err == nil:
		s.fail("want error %v, Decide accepted the command with events:\n%s", target, indent(lines(got)))
	case !errors.Is(err, target):
		s.fail("want error matching %v, got %v", target, err)
	}
}

// ThenState asserts that the command is accepted and that folding the given
// and the decided events yields want (compared with reflect.DeepEqual).
func (s *Scenario[S, C, E]) ThenState(want S) {
	s.t.Helper()
	got, err, ok := s.run()
	if !ok {
		return
	}
	if err != nil {
		s.fail("want state, Decide returned error: %v", err)
		return
	}
	state := s.decider.Fold(append(append([]E(nil), s.given...), got...)...)
	if !reflect.DeepEqual(state, want) {
		s.fail("state after the decided events differs (-want +got):\n%s",
			Diff([]string{fmt.Sprintf("%+v", want)}, []string{fmt.Sprintf("%+v", state)}))
	}
}

// run decides the command; ok is false when the scenario itself is unusable
// (already reported).
func (s *Scenario[S, C, E]) run() ([]E, error, bool) {
	s.t.Helper()
	d := s.decider
	if d.Initial == nil || d.Decide == nil || d.Evolve == nil {
		s.t.Errorf("commandtest: the decider needs Initial, Decide and Evolve")
		return nil, nil, false
	}
	if !s.hasCmd {
		s.t.Errorf("commandtest: scenario has no command: call When before Then")
		return nil, nil, false
	}
	state := d.Fold(s.given...)
	got, err := d.Decide(state, s.cmd)
	if fresh := d.Fold(s.given...); !reflect.DeepEqual(state, fresh) {
		s.fail("Decide mutated the state it was given (-before +after):\n%s",
			Diff([]string{fmt.Sprintf("%+v", fresh)}, []string{fmt.Sprintf("%+v", state)}))
		return nil, nil, false
	}
	return got, err, true
}

func (s *Scenario[S, C, E]) fail(format string, args ...any) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString("given:\n")
	if len(s.given) == 0 {
		b.WriteString("    (no events)\n")
	}
	b.WriteString(indent(lines(s.given)))
	fmt.Fprintf(&b, "when:\n    %T%+v\n", s.cmd, s.cmd)
	fmt.Fprintf(&b, format, args...)
	s.t.Errorf("%s", b.String())
}

func equalEvents[E any](got, want []E) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			return false
		}
	}
	return true
}

// lines renders one event per line.
func lines[E any](events []E) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprintf("%T%+v", e, e)
	}
	return out
}

func indent(ls []string) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString("    ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}
