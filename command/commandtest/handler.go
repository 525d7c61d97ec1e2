package commandtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// HandlerScenario is one given/when/then case for a [command.Handler] over a
// real [eventstore.Store]: given events already in the store, when the
// Handler handles a command, then these events were appended, or this error.
// Build it with ForHandler, then Given and When, and finish it with
// ThenAppended or ThenError.
//
// Unlike a Scenario, it runs everything the Handler does: loading and
// folding the stream through the registry's codec, deciding, appending with
// the expected version, idempotent commands (pass a context from
// command.WithID to Context). The store is a fresh in-memory one unless
// WithStore gives another.
type HandlerScenario[S, C, E any] struct {
	t        testing.TB
	decider  command.Decider[S, C, E]
	registry *eventstore.Registry
	cfg      command.Config
	store    eventstore.Store
	ctx      context.Context
	given    []givenEvents[E]
	id       string
	cmd      C
	hasCmd   bool
}

type givenEvents[E any] struct {
	id     string
	events []E
}

// ForHandler starts a scenario for a Handler of decider with registry and
// cfg (command.NewHandler's arguments), reporting failures to t.
func ForHandler[S, C, E any](t testing.TB, decider command.Decider[S, C, E], registry *eventstore.Registry, cfg command.Config) *HandlerScenario[S, C, E] {
	return &HandlerScenario[S, C, E]{t: t, decider: decider, registry: registry, cfg: cfg, ctx: context.Background()}
}

// WithStore runs the scenario on store instead of a fresh in-memory store.
// The scenario does not close it.
func (s *HandlerScenario[S, C, E]) WithStore(store eventstore.Store) *HandlerScenario[S, C, E] {
	s.store = store
	return s
}

// Context sets the context the command is handled with, e.g. one from
// command.WithID or command.WithMetadata.
func (s *HandlerScenario[S, C, E]) Context(ctx context.Context) *HandlerScenario[S, C, E] {
	s.ctx = ctx
	return s
}

// Given adds past events of entity id, appended to its stream before the
// command. Given may be called for several entities, or several times.
func (s *HandlerScenario[S, C, E]) Given(id string, events ...E) *HandlerScenario[S, C, E] {
	s.given = append(s.given, givenEvents[E]{id: id, events: events})
	return s
}

// When sets the command and the entity it is for.
func (s *HandlerScenario[S, C, E]) When(id string, cmd C) *HandlerScenario[S, C, E] {
	s.id, s.cmd, s.hasCmd = id, cmd, true
	return s
}

// ThenAppended asserts that the Handler accepts the command and that the
// store then holds exactly want after the given events, in order (all
// streams; compared as "%T%+v" lines, so a failure shows a readable line
// diff). ThenAppended() with no events asserts that the command was accepted
// and appended nothing (a decision of no events, or a repeated command). It
// returns the Handler's Result for further checks; for a repeated command
// its Events are those the store holds for the command.
func (s *HandlerScenario[S, C, E]) ThenAppended(want ...E) command.Result[E] {
	s.t.Helper()
	res, appended, ok, err := s.run()
	if !ok {
		return res
	}
	if err != nil {
		s.fail("want appended events, Handle returned error: %v\nwant:\n%s", err, indent(lines(want)))
		return res
	}
	if !equalEvents(appended, want) {
		s.fail("appended events differ (-want +got):\n%s", Diff(lines(want), lines(appended)))
	}
	return res
}

// ThenError asserts that Handle fails with an error matching target
// (errors.Is) and appends nothing. A domain refusal matches both the
// decider's error and command.ErrRejected.
func (s *HandlerScenario[S, C, E]) ThenError(target error) {
	s.t.Helper()
	_, appended, ok, err := s.run()
	if !ok {
		return
	}
	switch {
	case err == nil:
		s.fail("want error %v, Handle accepted the command and appended:\n%s", target, indent(lines(appended)))
	case !errors.Is(err, target):
		s.fail("want error matching %v, got %v", target, err)
	case len(appended) > 0:
		s.fail("Handle failed with %v as wanted, but appended:\n%s", err, indent(lines(appended)))
	}
}

// run appends the given events, handles the command and reads back what was
// appended; ok is false when the scenario itself is unusable (reported).
func (s *HandlerScenario[S, C, E]) run() (res command.Result[E], appended []E, ok bool, err error) {
	s.t.Helper()
	if !s.hasCmd {
		s.t.Errorf("commandtest: scenario has no command: call When before Then")
		return res, nil, false, nil
	}
	store := s.store
	if store == nil {
		m := memory.New()
		defer m.Close()
		store = m
	}
	ctx := context.Background()
	h, err := command.NewHandler(store, s.registry, s.decider, s.cfg)
	if err != nil {
		s.t.Errorf("commandtest: NewHandler: %v", err)
		return res, nil, false, nil
	}
	for _, g := range s.given {
		stream, err := h.StreamID(g.id)
		if err != nil {
			s.t.Errorf("commandtest: Given(%q): %v", g.id, err)
			return res, nil, false, nil
		}
		evs := make([]eventstore.Event, len(g.events))
		for i, e := range g.events {
			if evs[i], err = s.registry.Encode(e); err != nil {
				s.t.Errorf("commandtest: Given(%q): encode %T: %v", g.id, e, err)
				return res, nil, false, nil
			}
		}
		if _, err := store.Append(ctx, stream, eventstore.Any, evs...); err != nil {
			s.t.Errorf("commandtest: Given(%q): append: %v", g.id, err)
			return res, nil, false, nil
		}
	}
	head, err := store.Head(ctx)
	if err != nil {
		s.t.Errorf("commandtest: read the head of the log: %v", err)
		return res, nil, false, nil
	}
	res, err = h.Handle(s.ctx, s.id, s.cmd)
	for rec, rerr := range store.ReadAll(ctx, head) {
		if rerr != nil {
			s.t.Errorf("commandtest: read the appended events: %v", rerr)
			return res, nil, false, err
		}
		v, derr := s.registry.Decode(rec)
		if derr != nil {
			s.t.Errorf("commandtest: decode appended %s v%d (%s): %v", rec.StreamID, rec.Version, rec.Type, derr)
			return res, nil, false, err
		}
		e, isE := v.(E)
		if !isE {
			s.t.Errorf("commandtest: appended %s v%d is a %T, not an event of the decider", rec.StreamID, rec.Version, v)
			return res, nil, false, err
		}
		appended = append(appended, e)
	}
	return res, appended, true, err
}

func (s *HandlerScenario[S, C, E]) fail(format string, args ...any) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString("given:\n")
	if len(s.given) == 0 {
		b.WriteString("    (no events)\n")
	}
	for _, g := range s.given {
		fmt.Fprintf(&b, "  entity %q:\n", g.id)
		b.WriteString(indent(lines(g.events)))
	}
	fmt.Fprintf(&b, "when (entity %q):\n    %T%+v\n", s.id, s.cmd, s.cmd)
	fmt.Fprintf(&b, format, args...)
	s.t.Errorf("%s", b.String())
}
