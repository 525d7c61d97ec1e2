package commandapi_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/commandapi"
)

// BenchmarkCartWorkload runs the cart workload of cmd/eventline-bench (open,
// five items, check out) over a memory store twice: through command.Handler
// (the ceiling) and through the API's handler in process, with no network.
// The difference of their ns/op and allocs/op is what the API adds to a
// command: routing, headers, decoding and validating the body, metrics and
// the answer.
func BenchmarkCartWorkload(b *testing.B) {
	b.Run("handler", func(b *testing.B) {
		store := memory.New()
		defer store.Close()
		h, err := command.NewHandler(store, newRegistry(), cart.Decider, command.Config{Name: "cart"})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id, step := "c-"+strconv.Itoa(i/7), i%7
			var cmd cart.Command
			switch step {
			case 0:
				cmd = cart.Open{CustomerID: "cust-1"}
			case 6:
				cmd = cart.CheckOut{OrderID: "order-" + id}
			default:
				cmd = cart.AddItem{ProductID: "p-" + strconv.Itoa(step), Quantity: step, UnitPriceCents: 125}
			}
			if _, err := h.Handle(ctx, id, cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("api", func(b *testing.B) {
		store := memory.New()
		defer store.Close()
		a, err := commandapi.New(store, newRegistry(), commandapi.Config{})
		if err != nil {
			b.Fatal(err)
		}
		api := a.Handler()
		// The requests are built once and their bodies rewound, so that the
		// figure is the server side's alone.
		reqs := make([]*http.Request, 7)
		paths, bodies := make([]string, 7), make([]string, 7)
		readers := make([]*strings.Reader, 7)
		for step := range reqs {
			method, path, body := http.MethodPost, "/carts/ID/items", `{"product_id":"p-`+strconv.Itoa(step)+`","quantity":`+strconv.Itoa(step)+`,"unit_price_cents":125}`
			switch step {
			case 0:
				path, body = "/carts", `{"customer_id":"cust-1","cart_id":"ID"}`
			case 6:
				path, body = "/carts/ID/checkout", ""
			}
			paths[step], bodies[step] = path, body
			readers[step] = strings.NewReader(body)
			r, err := http.NewRequest(method, path, readers[step])
			if err != nil {
				b.Fatal(err)
			}
			if body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			reqs[step] = r
		}
		w := &discardWriter{header: http.Header{}}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id, step := "c-"+strconv.Itoa(i/7), i%7
			r := reqs[step]
			// Each cart has its own id, in the path or the body.
			r.URL.Path = strings.Replace(paths[step], "ID", id, 1)
			readers[step].Reset(strings.Replace(bodies[step], "ID", id, 1))
			r.Body = io.NopCloser(readers[step])
			clear(w.header)
			w.status = 0
			api.ServeHTTP(w, r)
			if w.status != http.StatusOK && w.status != http.StatusCreated {
				b.Fatalf("step %d of %s: status %d", step, id, w.status)
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps the status and drops the
// body.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
