package httpjson_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// An open breaker is answered 503 with its Retry-After and a body naming the
// dependency, not the generic "backing service" message.
func TestOpenBreakerIs503NamingTheDependency(t *testing.T) {
	rec := httptest.NewRecorder()
	err := fmt.Errorf("command: append to stream %q: %w", "cart-1", &breaker.OpenError{Name: "store", RetryAfter: 2500 * time.Millisecond})
	httpjson.WriteError(rec, err, nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Fatalf("Retry-After %q, want 3 (2.5 s rounded up)", got)
	}
	var body httpjson.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Code != httpjson.CodeUnavailable || body.Dependency != "store" || body.Error == "" {
		t.Fatalf("body %+v, want code unavailable naming the store", body)
	}
}
