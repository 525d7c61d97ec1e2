package queryapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// FuzzQueryAPI sends arbitrary paths and query strings under the API's routes
// and checks that every answer is a JSON body with a status the API
// documents, never a panic or a 500.
func FuzzQueryAPI(f *testing.F) {
	for _, seed := range []string{
		"/carts/c1", "/carts/c1?after=12", "/carts/%00?after=1-2", "/orders/o.1~x?after=", "/customers/a/carts?after=18446744073709551615",
		"/products/top?limit=100", "/products/top?limit=-0&after=0-0", "/carts/" + strings.Repeat("a", 200), "/carts/a%zz",
		"/orders/x?after=1-", "/products/top?limit=1e3", "/customers/%2e%2e/carts",
	} {
		f.Add(seed)
	}
	srv := redistest.Start(f)
	rdb := srv.Client(f)
	ctx := context.Background()
	for _, name := range []string{schema.Carts, schema.Customers, schema.Products, schema.Orders} {
		if err := rdb.Set(ctx, query.ActiveKey(name), 1, 0).Err(); err != nil {
			f.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	// A short wait: a fuzzed ?after= beyond the (empty) models times out.
	api := queryapi.New(rdb, queryapi.Config{WaitTimeout: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	f.Cleanup(func() { _ = api.Close() })
	api.Mount(mux)
	documented := map[int]bool{200: true, 400: true, 404: true, 503: true, 504: true}
	f.Fuzz(func(t *testing.T, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		req, err := http.NewRequest(http.MethodGet, "http://example.test"+target, nil)
		if err != nil {
			return
		}
		if _, pattern := mux.Handler(req); pattern == "" {
			return // not one of our routes
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code == http.StatusTemporaryRedirect || w.Code == http.StatusMovedPermanently {
			return // the mux cleaning a path such as /carts//0: no handler of ours ran
		}
		body, _ := io.ReadAll(w.Result().Body)
		if !documented[w.Code] || !json.Valid(body) || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("GET %q: %d %q %s", target, w.Code, w.Header().Get("Content-Type"), body)
		}
	})
}
