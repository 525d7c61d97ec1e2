package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// Open a store in a file, append to a stream with an expected version, and
// read the stream back.
func Example() {
	dir, err := os.MkdirTemp("", "eventline-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "events.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	res, err := store.Append(ctx, "cart-42", eventstore.NoStream,
		eventstore.Event{Type: "cart.opened", Data: []byte(`{"customer":"ada"}`)},
		eventstore.Event{Type: "cart.item_added", Data: []byte(`{"sku":"tea","qty":2}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended versions", res.FirstVersion, "to", res.LastVersion, "at position", res.Position)

	// A second writer that still believes the stream is new is refused.
	_, err = store.Append(ctx, "cart-42", eventstore.NoStream, eventstore.Event{Type: "cart.opened"})
	fmt.Println(err)

	for rec, err := range store.ReadStream(ctx, "cart-42", 1) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(rec.Version, rec.Type, string(rec.Data))
	}
	// Output:
	// appended versions 1 to 2 at position 2
	// eventstore: wrong expected version for stream "cart-42": expected no stream, actual 2
	// 1 cart.opened {"customer":"ada"}
	// 2 cart.item_added {"sku":"tea","qty":2}
}
