package queryapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/queryapi"
)

// do sends method path to the API and returns the answer with its body read.
func (h *harness) do(method, path string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx, method, h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, body
}

// internalNames are the spellings of the sample's internals that no error
// message may show a client: stream names and Go package prefixes.
var internalNames = []string{"cart-", "order-", "customer-", "command:", "eventstore:", "projection:", "query:",
	"redis:", "queryapi:", "{el:", "dial tcp"}

// checkErrorBody fails unless body is an error body of code whose message
// names nothing internal.
func checkErrorBody(t *testing.T, what string, body []byte, code string) {
	t.Helper()
	var e httpjson.Body
	if err := json.Unmarshal(body, &e); err != nil || e.Code != code || e.Error == "" {
		t.Fatalf("%s: body %s, want an error body of code %q", what, body, code)
	}
	for _, name := range internalNames {
		if strings.Contains(e.Error, name) {
			t.Errorf("%s: message %q names the internal %q", what, e.Error, name)
		}
	}
}

func TestUnknownRoutesAndWrongMethodsAnswerJSON(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/nowhere", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodGet, "/carts", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodPost, "/carts/c1", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/products/top", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
	} {
		resp, body := h.do(c.method, c.path)
		what := c.method + " " + c.path
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", what, resp.StatusCode, body, c.status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q, want JSON", what, ct)
		}
		if got := resp.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q, want %q", what, got, c.allow)
		}
		checkErrorBody(t, what, body, c.code)
	}
}

func TestAnswersCarryTheCheckpointPosition(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()

	res := h.cart("c1", cart.Open{CustomerID: "alice"})
	resp, body := h.do(http.MethodGet, "/carts/c1"+after(res.Position))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /carts/c1: %d %s", resp.StatusCode, body)
	}
	got, err := eventstore.ParsePosition(resp.Header.Get(queryapi.HeaderPosition))
	if err != nil {
		t.Fatalf("%s %q: %v", queryapi.HeaderPosition, resp.Header.Get(queryapi.HeaderPosition), err)
	}
	// The answer waited for the command's position, so the checkpoint it
	// reports is at or past it.
	if got.Before(res.Position) {
		t.Fatalf("%s %v is before the command's position %v", queryapi.HeaderPosition, got, res.Position)
	}

	// A later write moves the header of an answer that waited for it.
	res2 := h.cart("c1", cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 100})
	resp, body = h.do(http.MethodGet, "/products/top"+after(res2.Position))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /products/top: %d %s", resp.StatusCode, body)
	}
	got2, err := eventstore.ParsePosition(resp.Header.Get(queryapi.HeaderPosition))
	if err != nil || got2.Before(res2.Position) || !got.Before(got2) {
		t.Fatalf("%s %q (%v) after the second write at %v; the first answer had %v",
			queryapi.HeaderPosition, resp.Header.Get(queryapi.HeaderPosition), err, res2.Position, got)
	}

	// Errors carry no position: there is no answer to date.
	resp, _ = h.do(http.MethodGet, "/carts/nope")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get(queryapi.HeaderPosition) != "" {
		t.Fatalf("GET /carts/nope: %d with %s %q", resp.StatusCode, queryapi.HeaderPosition, resp.Header.Get(queryapi.HeaderPosition))
	}
}

func TestErrorMessagesNameNoInternals(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	// Not ready: no projection has built its model yet.
	resp, body := h.do(http.MethodGet, "/carts/c1")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before any build: %d %s", resp.StatusCode, body)
	}
	checkErrorBody(t, "not ready", body, httpjson.CodeNotReady)

	h.startProjectors(projection.Config{})
	h.waitActive()
	resp, body = h.do(http.MethodGet, "/orders/o404")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing order: %d %s", resp.StatusCode, body)
	}
	checkErrorBody(t, "not found", body, httpjson.CodeNotFound)

	// A store failure: Redis is gone.
	h.redis.Kill()
	resp, body = h.do(http.MethodGet, "/carts/c1")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Redis killed: %d %s", resp.StatusCode, body)
	}
	checkErrorBody(t, "Redis killed", body, httpjson.CodeUnavailable)
}

func TestRequestMetrics(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	// No projector: the read models are not built yet.
	if resp, body := h.do(http.MethodGet, "/carts/c1"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before any build: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do(http.MethodGet, "/carts/c2"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before any build: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do(http.MethodGet, "/orders/bad!id"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad id: %d %s", resp.StatusCode, body)
	}
	// The route is the pattern, not the path: two carts, one series.
	want := `
# HELP eventline_http_requests_total HTTP requests answered, by API, route and status.
# TYPE eventline_http_requests_total counter
eventline_http_requests_total{api="query",route="GET /carts/{id}",status="200"} 0
eventline_http_requests_total{api="query",route="GET /carts/{id}",status="503"} 2
eventline_http_requests_total{api="query",route="GET /customers/{id}/carts",status="200"} 0
eventline_http_requests_total{api="query",route="GET /orders/{id}",status="200"} 0
eventline_http_requests_total{api="query",route="GET /orders/{id}",status="400"} 1
eventline_http_requests_total{api="query",route="GET /products/top",status="200"} 0
`
	if err := testutil.GatherAndCompare(h.metrics, strings.NewReader(want), "eventline_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(h.metrics, "eventline_http_request_duration_seconds"); err != nil || n != 4 {
		t.Errorf("duration series: %d, %v; want 4, one per route", n, err)
	}
}
