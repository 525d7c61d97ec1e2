package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/api"
)

func TestWriteError(t *testing.T) {
	// rejected wraps a domain error the way command.Handler returns it.
	rejected := func(err error) error { return &command.RejectedError{StreamID: "cart-1", Err: err} }
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{rejected(cart.ErrCheckedOut), 422, api.CodeRuleViolated},
		{rejected(fmt.Errorf("%w: product %q", cart.ErrQuantityRange, "apple")), 422, api.CodeRuleViolated},
		{cart.ErrEmptyCart, 422, api.CodeRuleViolated},
		{cart.ErrTooManyLines, 422, api.CodeRuleViolated},
		{cart.ErrInvalidPrice, 422, api.CodeRuleViolated},
		{order.ErrNotPending, 422, api.CodeRuleViolated},
		{customer.ErrInvalidLimit, 422, api.CodeRuleViolated},
		{rejected(errors.New("some other refusal")), 422, api.CodeRuleViolated},
		{rejected(cart.ErrCartNotOpen), 404, api.CodeNotFound},
		{rejected(cart.ErrItemNotFound), 404, api.CodeNotFound},
		{order.ErrNotPlaced, 404, api.CodeNotFound},
		{customer.ErrNotRegistered, 404, api.CodeNotFound},
		{eventstore.ErrStreamNotFound, 404, api.CodeNotFound},
		{rejected(cart.ErrAlreadyOpen), 409, api.CodeConflict},
		{customer.ErrAlreadyRegistered, 409, api.CodeConflict},
		{&eventstore.WrongVersionError{StreamID: "cart-1", Expected: eventstore.Exact(1), Actual: 2}, 409, api.CodeConflict},
		{fmt.Errorf("%w: gave up: %w", command.ErrConflict, eventstore.ErrWrongVersion), 409, api.CodeConflict},
		{fmt.Errorf("%w: key k", command.ErrIdempotencyConflict), 409, api.CodeConflict},
		{fmt.Errorf("%w: entity id is empty", command.ErrInvalidID), 400, api.CodeMalformed},
		{fmt.Errorf("append: %w", eventstore.ErrInvalidStreamID), 400, api.CodeMalformed},
		{eventstore.ErrTooLarge, 413, api.CodeTooLarge},
		{fmt.Errorf("load: %w", eventstore.ErrUnavailable), 503, api.CodeUnavailable},
		{eventstore.ErrClosed, 503, api.CodeUnavailable},
		{context.DeadlineExceeded, 503, api.CodeUnavailable},
		{errors.New("disk on fire at /var/lib/secret"), 500, api.CodeInternal},
		{api.NewError(http.StatusTeapot, "teapot", "short and stout"), 418, "teapot"},
		{fmt.Errorf("wrapped: %w", api.NewError(404, api.CodeNotFound, "no such cart")), 404, api.CodeNotFound},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		api.WriteError(w, c.err)
		var body api.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Errorf("%v: body %q is not JSON: %v", c.err, w.Body, err)
			continue
		}
		if w.Code != c.status || body.Code != c.code || body.Error == "" {
			t.Errorf("%v: wrote %d %+v, want %d %s", c.err, w.Code, body, c.status, c.code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%v: Content-Type %q", c.err, ct)
		}
		if c.status >= 500 && body.Error == c.err.Error() {
			t.Errorf("%v: a %d shows the internal error text", c.err, c.status)
		}
		want := c.err.Error()
		if e, ok := errors.AsType[*api.Error](c.err); ok {
			want = e.Message
		}
		if c.status < 500 && body.Error != want {
			t.Errorf("%v: a %d says %q, want the error's text", c.err, c.status, body.Error)
		}
	}
}

// TestWriteErrorWithExtraMappings shows how a caller adds a mapping.
func TestWriteErrorWithExtraMappings(t *testing.T) {
	errPaused := errors.New("writes paused")
	mappings := append(api.DefaultErrorMappings(), api.ErrorMapping{Target: errPaused, Status: 503, Code: api.CodeUnavailable})
	w := httptest.NewRecorder()
	api.WriteErrorWith(w, fmt.Errorf("handle: %w", errPaused), mappings)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("got %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// The default table does not know it, and is not changed by the append.
	if got := api.Classify(errPaused, api.DefaultErrorMappings()); got.Status != 500 {
		t.Errorf("default mappings give %d", got.Status)
	}
}

// TestEveryDomainErrorIsA4xx guards the mapping as the domain grows: every
// exported sentinel of the sample's domain maps to a 4xx.
func TestEveryDomainErrorIsA4xx(t *testing.T) {
	all := []error{
		cart.ErrCartNotOpen, cart.ErrAlreadyOpen, cart.ErrCheckedOut, cart.ErrNotCheckedOut, cart.ErrEmptyCart,
		cart.ErrQuantityRange, cart.ErrTooManyLines, cart.ErrItemNotFound, cart.ErrInvalidPrice, cart.ErrPriceMismatch,
		cart.ErrInvalidProductID, cart.ErrInvalidCustomerID, cart.ErrInvalidOrderID, cart.ErrInvalidReason, cart.ErrUnknownCommand,
		order.ErrNotPlaced, order.ErrAlreadyPlaced, order.ErrNotPending, order.ErrInvalidID, order.ErrInvalidItems,
		order.ErrTotalMismatch, order.ErrInvalidReason, order.ErrUnknownCommand,
		customer.ErrNotRegistered, customer.ErrAlreadyRegistered, customer.ErrInvalidLimit, customer.ErrInvalidAmount,
		customer.ErrInvalidOrderID, customer.ErrReservationNotFound, customer.ErrUnknownCommand,
	}
	for _, err := range all {
		if e := api.Classify(err, api.DefaultErrorMappings()); e.Status < 400 || e.Status > 499 {
			t.Errorf("%v maps to %d", err, e.Status)
		}
	}
}
