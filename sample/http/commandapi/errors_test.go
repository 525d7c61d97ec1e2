package commandapi_test

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
	"github.com/eventline/eventline/sample/domain"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/httpjson"
)

func TestWriteError(t *testing.T) {
	// rejected wraps a domain error the way command.Handler returns it.
	rejected := func(err error) error { return &command.RejectedError{StreamID: "cart-1", Err: err} }
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{rejected(cart.ErrCheckedOut), 422, httpjson.CodeRuleViolated},
		{rejected(fmt.Errorf("%w: product %q", cart.ErrQuantityRange, "apple")), 422, httpjson.CodeRuleViolated},
		{cart.ErrEmptyCart, 422, httpjson.CodeRuleViolated},
		{cart.ErrTooManyLines, 422, httpjson.CodeRuleViolated},
		{cart.ErrInvalidPrice, 422, httpjson.CodeRuleViolated},
		{order.ErrNotPending, 422, httpjson.CodeRuleViolated},
		{customer.ErrInvalidLimit, 422, httpjson.CodeRuleViolated},
		{rejected(errors.New("some other refusal")), 422, httpjson.CodeRuleViolated},
		{rejected(cart.ErrCartNotOpen), 404, httpjson.CodeNotFound},
		{rejected(cart.ErrItemNotFound), 404, httpjson.CodeNotFound},
		{order.ErrNotPlaced, 404, httpjson.CodeNotFound},
		{customer.ErrNotRegistered, 404, httpjson.CodeNotFound},
		{eventstore.ErrStreamNotFound, 404, httpjson.CodeNotFound},
		{rejected(cart.ErrAlreadyOpen), 409, httpjson.CodeConflict},
		{customer.ErrAlreadyRegistered, 409, httpjson.CodeConflict},
		{&eventstore.WrongVersionError{StreamID: "cart-1", Expected: eventstore.Exact(1), Actual: 2}, 409, httpjson.CodeConflict},
		{fmt.Errorf("%w: gave up: %w", command.ErrConflict, eventstore.ErrWrongVersion), 409, httpjson.CodeConflict},
		{fmt.Errorf("%w: key k", command.ErrIdempotencyConflict), 409, httpjson.CodeConflict},
		{fmt.Errorf("%w: entity id is empty", command.ErrInvalidID), 400, httpjson.CodeMalformed},
		{fmt.Errorf("append: %w", eventstore.ErrInvalidStreamID), 400, httpjson.CodeMalformed},
		{eventstore.ErrTooLarge, 413, httpjson.CodeTooLarge},
		{fmt.Errorf("load: %w", eventstore.ErrUnavailable), 503, httpjson.CodeUnavailable},
		{eventstore.ErrClosed, 503, httpjson.CodeUnavailable},
		{context.DeadlineExceeded, 503, httpjson.CodeUnavailable},
		{errors.New("disk on fire at /var/lib/secret"), 500, httpjson.CodeInternal},
		{httpjson.NewError(http.StatusTeapot, "teapot", "short and stout"), 418, "teapot"},
		{fmt.Errorf("wrapped: %w", httpjson.NewError(404, httpjson.CodeNotFound, "no such cart")), 404, httpjson.CodeNotFound},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		commandapi.WriteError(w, c.err)
		var body httpjson.Body
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
		// A domain refusal answers the domain's own text, without the
		// stream the handler names; an *httpjson.Error its Message; every
		// other error a fixed text. None names an internal.
		checkNoInternalNames(t, w.Body.String())
		want := ""
		if e, ok := errors.AsType[*httpjson.Error](c.err); ok {
			want = e.Message
		} else if errors.Is(c.err, domain.ErrRuleViolated) {
			want = c.err.Error()
			if re, ok := errors.AsType[*command.RejectedError](c.err); ok {
				want = re.Err.Error()
			}
		}
		if want != "" && body.Error != want {
			t.Errorf("%v: a %d says %q, want %q", c.err, c.status, body.Error, want)
		}
	}
}

// TestWriteErrorWithExtraMappings shows how a caller adds a mapping.
func TestWriteErrorWithExtraMappings(t *testing.T) {
	errPaused := errors.New("writes paused")
	mappings := append(commandapi.ErrorMappings(), httpjson.Mapping{Target: errPaused, Status: 503, Code: httpjson.CodeUnavailable})
	w := httptest.NewRecorder()
	httpjson.WriteError(w, fmt.Errorf("handle: %w", errPaused), mappings)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("got %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// The default table does not know it, and is not changed by the append.
	if got := httpjson.Classify(errPaused, commandapi.ErrorMappings()); got.Status != 500 {
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
		if e := httpjson.Classify(err, commandapi.ErrorMappings()); e.Status < 400 || e.Status > 499 {
			t.Errorf("%v maps to %d", err, e.Status)
		}
	}
}
