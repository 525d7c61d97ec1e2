package queryapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel"
)

// The read path of the sample: a runner keeps the carts model, the query API
// serves it, and ?after= waits for the position an append returned.
func ExampleAPI_Mount() {
	mr := miniredis.NewMiniRedis() // any Redis; the tests use a real redis-server
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	store := memory.New()
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	runner, err := projection.NewRunner(projection.Config{Store: store, Redis: rdb, Projection: readmodel.CartsProjection(reg)})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	var events []eventstore.Event
	for _, e := range []cart.Event{cart.Opened{CustomerID: "alice"},
		cart.ItemAdded{ProductID: "tea", Quantity: 2, UnitPriceCents: 450}} {
		ev, _ := reg.Encode(e)
		events = append(events, ev)
	}
	res, err := store.Append(ctx, "cart-c1", eventstore.NoStream, events...)
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	api := queryapi.New(rdb, queryapi.Config{})
	defer api.Close()
	api.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for {
		resp, err := http.Get(srv.URL + "/carts/c1?after=" + res.Position.String())
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			continue // not_ready: the runner has not activated the model yet
		}
		fmt.Print(resp.StatusCode, " ", string(body))
		break
	}
	cancel()
	fmt.Println(<-done)
	// Output:
	// 200 {"cart_id":"c1","customer_id":"alice","status":"open","items":[{"product_id":"tea","quantity":2,"unit_price_cents":450}],"total_cents":900,"version":2}
	// <nil>
}
