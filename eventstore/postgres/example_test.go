package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// Open a store, append with an expected version, and tell the failures that
// may be retried apart.
func ExampleOpen() {
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{
		URL:    "postgres://app:secret@db:5432/app?sslmode=disable",
		Schema: "carts", // one schema per application sharing the database
	})
	if err != nil {
		log.Fatal(err) // a wrong URL, password or database, or a newer schema
	}
	defer store.Close()

	// An id of the caller's own makes the append safe to retry: a retry with
	// the same id is recognised, never written twice.
	event := eventstore.Event{ID: uuid.New(), Type: "cart.opened", Data: []byte(`{"customer_id":"ann"}`)}
	res, err := store.Append(ctx, "cart-42", eventstore.NoStream, event)
	switch {
	case errors.Is(err, postgres.ErrOutcomeUnknown):
		// The connection broke during COMMIT: retry with the same event, which
		// returns the original result (Repeated) if it was written.
	case errors.Is(err, eventstore.ErrUnavailable):
		// Not written; the database is unreachable. Retry later.
	case errors.Is(err, eventstore.ErrWrongVersion):
		// Someone else wrote to the stream first.
	case err == nil:
		fmt.Println("written at", res.Position, "repeat:", res.Repeated)
	}
}
