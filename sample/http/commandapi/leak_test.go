package commandapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/sample/http/commandapi"
)

// internalNames are the spellings of the sample's internals that no error
// message may show a client: stream names and Go package prefixes.
var internalNames = []string{"cart-", "order-", "customer-", "command:", "eventstore:", "projection:",
	"memory:", "sqlite:", "commandapi:", "stream \\\"", "json:"}

// checkNoInternalNames fails if the error body's message names an internal.
func checkNoInternalNames(t *testing.T, body string) {
	t.Helper()
	for _, name := range internalNames {
		if strings.Contains(body, name) {
			t.Errorf("error body %s names the internal %q", body, name)
		}
	}
}

// failingStore is a memory store whose appends fail with err, wrapped the way
// a backend wraps its errors: with the package and the stream.
type failingStore struct {
	*memory.Store
	err error
}

func (s failingStore) Append(_ context.Context, stream string, _ eventstore.ExpectedVersion, _ ...eventstore.Event) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, fmt.Errorf("eventstore: memory: append to stream %q: %w", stream, s.err)
}

// A conflict, a store failure and an unknown entity answer in the client's
// words; the log, not the body, keeps the stream and the package.
func TestErrorMessagesNameNoInternals(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"conflict", eventstore.ErrWrongVersion, http.StatusConflict, "conflict"},
		{"store unavailable", eventstore.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
		{"store failure", errors.New("disk I/O error"), http.StatusInternalServerError, "internal"},
		{"too large", eventstore.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
		{"bad stream id", eventstore.ErrInvalidStreamID, http.StatusBadRequest, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := memory.New()
			t.Cleanup(func() { _ = store.Close() })
			a, err := commandapi.New(failingStore{store, c.err}, newRegistry(), commandapi.Config{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{t: t, store: store, h: a.Handler()}
			res := f.must(c.status, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
			if got := res.json(t)["code"]; got != c.code {
				t.Fatalf("code %v, want %s; body %s", got, c.code, res.body)
			}
			checkNoInternalNames(t, res.body)
		})
	}

	// Refusals by the domain: the stream the command was refused on stays out.
	f := newFixture(t)
	for _, r := range [][4]string{
		{"404", "POST", "/carts/nope/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`},
		{"404", "POST", "/carts/nope/checkout", ""},
		{"422", "POST", "/customers", `{"credit_limit_cents":-5}`},
		{"400", "POST", "/carts", `{"customer_id":`},
		{"400", "POST", "/carts", `{"customer_id":"ann"}{}`},
		{"400", "POST", "/carts", `[1]`},
	} {
		res := f.do(r[1], r[2], r[3])
		if fmt.Sprint(res.status) != r[0] {
			t.Fatalf("%s %s %s: %d %s, want %s", r[1], r[2], r[3], res.status, res.body, r[0])
		}
		checkNoInternalNames(t, res.body)
	}
}

func TestUnknownRoutesAndWrongMethodsAnswerJSON(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nowhere", 404, "not_found", ""},
		{"GET", "/carts", 405, "method_not_allowed", "POST"},
		{"GET", "/carts/c1/items", 405, "method_not_allowed", "POST"},
		{"POST", "/carts/c1/items/apple", 405, "method_not_allowed", "DELETE, PUT"},
	} {
		res := f.do(c.method, c.path, "")
		what := c.method + " " + c.path
		if res.status != c.status || res.json(t)["code"] != c.code || res.header.Get("Allow") != c.allow {
			t.Errorf("%s: %d %s Allow %q, want %d %s Allow %q", what, res.status, res.body, res.header.Get("Allow"), c.status, c.code, c.allow)
		}
		if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", what, ct)
		}
	}
}
