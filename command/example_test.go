package command_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// The domain: a to-do list. It imports nothing from eventline but the Decider
// type, and only to declare it.

type TodoList struct {
	Items map[string]bool // title → done
}

type TodoCommand interface{ isTodoCommand() }

type AddItem struct{ Title string }

func (AddItem) isTodoCommand() {}

type TodoEvent interface{ isTodoEvent() }

type ItemAdded struct{ Title string }

func (ItemAdded) isTodoEvent() {}

var ErrDuplicateItem = errors.New("item already on the list")

var Todos = command.Decider[TodoList, TodoCommand, TodoEvent]{
	Initial: func() TodoList { return TodoList{Items: map[string]bool{}} },
	Decide: func(s TodoList, c TodoCommand) ([]TodoEvent, error) {
		switch c := c.(type) {
		case AddItem:
			if _, ok := s.Items[c.Title]; ok {
				return nil, ErrDuplicateItem
			}
			return []TodoEvent{ItemAdded(c)}, nil
		}
		return nil, fmt.Errorf("unknown command %T", c)
	},
	Evolve: func(s TodoList, e TodoEvent) TodoList {
		switch e := e.(type) {
		case ItemAdded:
			s.Items[e.Title] = false
		}
		return s
	},
}

func Example() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()

	registry := eventstore.NewRegistry()
	eventstore.Register[ItemAdded](registry, "todo.item_added")

	todos, err := command.NewHandler(store, registry, Todos, command.Config{Name: "todo"})
	if err != nil {
		fmt.Println(err)
		return
	}

	// An HTTP API would take the command id from the Idempotency-Key header.
	ctx = command.WithID(ctx, "req-1")
	res, err := todos.Handle(ctx, "groceries", AddItem{Title: "milk"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s at version %d, position %s: %+v\n", res.StreamID, res.Version, res.Position, res.Events)

	// The same request again (a client retry) changes nothing.
	res, err = todos.Handle(ctx, "groceries", AddItem{Title: "milk"})
	fmt.Printf("retry: version %d, %v\n", res.Version, err)

	// A new request for the same item breaks a domain rule.
	_, err = todos.Handle(command.WithID(ctx, "req-2"), "groceries", AddItem{Title: "milk"})
	fmt.Println(errors.Is(err, ErrDuplicateItem), errors.Is(err, command.ErrRejected))
	// Output:
	// todo-groceries at version 1, position 1: [{Title:milk}]
	// retry: version 1, <nil>
	// true true
}

// Handling an event that another command wrote: the new events carry its id as
// causation and continue its correlation.
func ExampleCausedBy() {
	ctx := context.Background()
	store := memory.New()
	defer store.Close()
	registry := eventstore.NewRegistry()
	eventstore.Register[ItemAdded](registry, "todo.item_added")
	todos, _ := command.NewHandler(store, registry, Todos, command.Config{Name: "todo"})

	ctx = command.WithMetadata(ctx, eventstore.Metadata{CorrelationID: "order-77"})
	if _, err := todos.Handle(ctx, "shop", AddItem{Title: "flour"}); err != nil {
		fmt.Println(err)
		return
	}
	for rec, err := range store.ReadStream(ctx, "todo-shop", 1) {
		if err != nil {
			fmt.Println(err)
			return
		}
		// A process manager reacting to rec:
		res, err := todos.Handle(command.CausedBy(ctx, rec), "pantry", AddItem{Title: "flour"})
		if err != nil {
			fmt.Println(err)
			return
		}
		for follow, err := range store.ReadStream(ctx, res.StreamID, 1) {
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Println(follow.Metadata.CorrelationID, follow.Metadata.CausationID == rec.ID.String())
		}
	}
	// Output:
	// order-77 true
}
