package queryapi_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// BenchmarkGetCart measures GET /carts/{id} through the handler (in process,
// no HTTP connection) beside its raw ceiling: the one Redis read the query
// needs (HGETALL of the cart's hash; the active version comes from the
// Watcher's cache) issued directly. Compare the ns/op of the two
// sub-benchmarks of one run.
func BenchmarkGetCart(b *testing.B) {
	h := newHarness(b, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	h.cart("bench", cart.Open{CustomerID: "zoe"})
	for i := range 20 {
		h.cart("bench", cart.AddItem{ProductID: "p" + string(rune('a'+i)), Quantity: 1, UnitPriceCents: 100})
	}
	pos := h.cart("bench", cart.CheckOut{OrderID: "ob"}).Position
	h.getJSON("/carts/bench"+after(pos), &schema.Cart{})

	b.Run("raw_redis", func(b *testing.B) {
		key := query.Key(schema.Carts, query.Version(schema.CartsVersion), schema.PartCart, "bench")
		for b.Loop() {
			if err := h.rdb.HGetAll(h.ctx, key).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("query_api", func(b *testing.B) {
		mux := http.NewServeMux()
		api := queryapi.New(h.rdb, queryapi.Config{Logger: slog.New(slog.DiscardHandler)})
		defer api.Close()
		api.Mount(mux)
		req := httptest.NewRequest(http.MethodGet, "/carts/bench", nil)
		for b.Loop() {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
