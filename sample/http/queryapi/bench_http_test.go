package queryapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/cputime"
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
func BenchmarkGetCartHTTP64(b *testing.B) { benchGetCartHTTP(b, 64, false) }

// BenchmarkGetCartHTTP4 is the same with 4 clients, a concurrency at which
// the ceiling's p99 can stay in the low milliseconds on 2 cores.
func BenchmarkGetCartHTTP4(b *testing.B) { benchGetCartHTTP(b, 4, false) }

// BenchmarkGetCartHTTP8 and BenchmarkGetCartHTTP16 fill in the p99 between 4
// and 64 clients.
func BenchmarkGetCartHTTP8(b *testing.B)  { benchGetCartHTTP(b, 8, false) }
func BenchmarkGetCartHTTP16(b *testing.B) { benchGetCartHTTP(b, 16, false) }

// BenchmarkGetCartAfterHTTP64 is BenchmarkGetCartHTTP64 with ?after= the
// position of the cart's last command, which the model has applied: what a
// client that reads its own writes sends.
func BenchmarkGetCartAfterHTTP64(b *testing.B) { benchGetCartHTTP(b, 64, true) }

func benchGetCartHTTP(b *testing.B, clients int, withAfter bool) {
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
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
		defer client.CloseIdleConnections()
		url := srv.URL + "/carts/bench"
		if withAfter {
			url += after(pos)
		}
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		cpu0, rcpu0 := cputime.Process(), redisCPU(b, h.rdb)
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
		reportCPU(b, h.rdb, cpu0, rcpu0)
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
	for _, c := range []struct {
		name       string
		noCoalesce bool
	}{{"query_api", false}, {"query_api_uncoalesced", true}} {
		b.Run(c.name, func(b *testing.B) {
			mux := http.NewServeMux()
			api := queryapi.New(h.rdb, queryapi.Config{Logger: slog.New(slog.DiscardHandler), NoCoalesce: c.noCoalesce})
			defer api.Close()
			api.Mount(mux)
			run(b, mux)
		})
	}
}

// redisCPU returns the CPU time redis-server reports it used (INFO cpu),
// 0 when it does not say (miniredis).
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// reportCPU reports the CPU this process and redis-server used per
// request since cpu0 and rcpu0: on a machine shared with other work a
// steadier figure than ns/op, and, over the ceiling's, what bounds the
// ratio when the cores are the limit.
func reportCPU(b *testing.B, rdb redis.UniversalClient, cpu0, rcpu0 time.Duration) {
	if b.N == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(per(cputime.Process()-cpu0), "cpu-µs/op")
	if r := redisCPU(b, rdb); r > 0 {
		b.ReportMetric(per(r-rcpu0), "redis-cpu-µs/op")
	}
}
