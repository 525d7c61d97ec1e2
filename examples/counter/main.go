// Command counter is the README's library example: a decider and a command
// handler on the embedded SQLite event store.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// Add is the command, Added the event it decides.
type Add struct{ N int }
type Added struct{ N int }

var ErrTooMany = errors.New("a counter stops at 100")

// Counter is the domain: pure functions, no framework types but the Decider.
var Counter = command.Decider[int, Add, Added]{
	Initial: func() int { return 0 },
	Decide: func(n int, c Add) ([]Added, error) {
		if n+c.N > 100 {
			return nil, ErrTooMany
		}
		return []Added{{N: c.N}}, nil
	},
	Evolve: func(n int, e Added) int { return n + e.N },
}

func main() {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: "data/counter.db"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	reg := eventstore.NewRegistry()
	eventstore.Register[Added](reg, "counter.added")

	h, err := command.NewHandler(store, reg, Counter, command.Config{Name: "counter"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := h.Handle(ctx, "c1", Add{N: 3}) // appends to stream "counter-c1"
	if err != nil {
		log.Fatal(err)
	}
	// res.Position: pass it to a query to read your own write.
	fmt.Printf("%s at version %d, position %s\n", res.StreamID, res.Version, res.Position)
}
