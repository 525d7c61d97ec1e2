package esdb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/esdb"
)

// Open a store on a local insecure node, append to a stream and read it back.
// It needs a server (see docs/esdb.md), so it is compiled but not run by go test.
func ExampleOpen() {
	ctx := context.Background()
	store, err := esdb.Open(ctx, esdb.Config{URL: "esdb://localhost:2113?tls=false"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := store.Append(ctx, "cart-42", eventstore.NoStream,
		eventstore.Event{Type: "cart.opened", Data: []byte(`{"cart":"42"}`)})
	switch {
	case errors.Is(err, eventstore.ErrWrongVersion):
		log.Fatal("cart-42 already exists")
	case errors.Is(err, eventstore.ErrUnavailable):
		log.Fatal("EventStoreDB is down: ", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("cart-42 is at version", res.LastVersion, "position", res.Position)

	for rec, err := range store.ReadStream(ctx, "cart-42", 1) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.Version, rec.Type, string(rec.Data))
	}
}

// A connection string is checked, with the client's own parser, before
// anything connects.
func ExampleConfig_Validate() {
	for _, url := range []string{
		"esdb://localhost:2113?tls=false",
		"esdb://node1:2113,node2:2113,node3:2113?nodePreference=leader",
		"esdb://localhost:2113?tsl=false",
		"http://localhost:2113",
	} {
		fmt.Println(esdb.Config{URL: url}.Validate())
	}
	// Output:
	// <nil>
	// <nil>
	// esdb: invalid config: URL "esdb://localhost:2113?tsl=false": unknown setting "tsl"
	// esdb: invalid config: URL "http://localhost:2113": an invalid scheme is specified, expecting esdb:// or esdb+discover://
}
