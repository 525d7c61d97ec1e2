package queryapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// BenchmarkGetCartHTTP64 measures GET /carts/{id} over loopback HTTP with 64
// concurrent clients beside its ceiling in the same run: a trivial net/http
// handler encoding a small JSON document, as cmd/eventline-bench's http-64. Compare the
// ns/op of the two (their ratio is what counts on a loaded machine); p99-ms
// is each request's latency seen by its client.
func BenchmarkGetCartHTTP64(b *testing.B) {
	h := newHarness(b, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	h.cart("bench", cart.Open{CustomerID: "zoe"})
	var pos eventstore.Position
	for i := range 5 {
		pos = h.cart("bench", cart.AddItem{ProductID: "p" + string(rune('a'+i)), Quantity: 1, UnitPriceCents: 100}).Position
	}
	h.getJSON("/carts/bench"+after(pos), &schema.Cart{})

	run := func(b *testing.B, handler http.Handler) {
		srv := httptest.NewServer(handler)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
		defer client.CloseIdleConnections()
		url := srv.URL + "/carts/bench"
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				start := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		b.StopTimer()
		if len(lat) > 0 {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
	}
	b.Run("ceiling", func(b *testing.B) {
		// The ceiling of cmd/eventline-bench (row http-64): a small JSON
		// document encoded per request.
		mux := http.NewServeMux()
		mux.HandleFunc("GET /carts/{id}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"cart_id": r.PathValue("id"), "status": "open", "total_cents": 4200, "version": 3})
		})
		run(b, mux)
	})
	b.Run("query_api", func(b *testing.B) {
		mux := http.NewServeMux()
		api := queryapi.New(h.rdb, queryapi.Config{Logger: slog.New(slog.DiscardHandler)})
		defer api.Close()
		api.Mount(mux)
		run(b, mux)
	})
}
