package command

// Decider is the domain logic of one kind of entity as pure functions: the only
// framework type domain code needs. S is the entity's state, C its commands and E
// its events (usually an interface type the domain's event structs implement).
//
// Decide must not mutate the state it is given; Evolve returns the next state.
// A domain rule violation is an ordinary error returned by Decide.
type Decider[S, C, E any] struct {
	// Initial returns the state of an entity with no events.
	Initial func() S
	// Decide turns a command into events, or refuses it with an error.
	Decide func(state S, cmd C) ([]E, error)
	// Evolve applies one event to the state.
	Evolve func(state S, event E) S
}

// Fold replays events over the initial state.
func (d Decider[S, C, E]) Fold(events ...E) S {
	s := d.Initial()
	for _, e := range events {
		s = d.Evolve(s, e)
	}
	return s
}
