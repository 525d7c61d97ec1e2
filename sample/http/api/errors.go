package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/apierror"
)

// Machine-readable error codes, the "code" of an error body.
const (
	CodeMalformed            = apierror.CodeMalformed   // 400
	CodeNotFound             = apierror.CodeNotFound    // 404
	CodeConflict             = apierror.CodeConflict    // 409
	CodeTooLarge             = "too_large"              // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeRuleViolated         = "rule_violated"          // 422
	CodeInternal             = apierror.CodeInternal    // 500
	CodeUnavailable          = apierror.CodeUnavailable // 503
)

// Error is an error with the HTTP status and code to answer it with. Message
// is shown to the client; Err, if any, is the cause, for errors.Is and logs.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// Dependency and RetryAfter are set when a circuit breaker refused the
	// request: the dependency that is down, and the Retry-After header.
	Dependency, RetryAfter string
}

// NewError returns an *Error with no cause.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrorMapping maps the errors matching Target (errors.Is) to an HTTP status
// and code.
type ErrorMapping struct {
	Target error
	Status int
	Code   string
}

// DefaultErrorMappings returns, in order, the mappings WriteError uses: the
// sample's "does not exist" and "already exists" refusals (404, 409), then
// any other domain rule (422), then the command and event store sentinels.
// It returns a new slice each time, so callers may extend it freely.
func DefaultErrorMappings() []ErrorMapping {
	return []ErrorMapping{
		{cart.ErrCartNotOpen, http.StatusNotFound, CodeNotFound},
		{cart.ErrItemNotFound, http.StatusNotFound, CodeNotFound},
		{order.ErrNotPlaced, http.StatusNotFound, CodeNotFound},
		{customer.ErrNotRegistered, http.StatusNotFound, CodeNotFound},
		{customer.ErrReservationNotFound, http.StatusNotFound, CodeNotFound},
		{cart.ErrAlreadyOpen, http.StatusConflict, CodeConflict},
		{order.ErrAlreadyPlaced, http.StatusConflict, CodeConflict},
		{customer.ErrAlreadyRegistered, http.StatusConflict, CodeConflict},
		{domain.ErrRuleViolated, http.StatusUnprocessableEntity, CodeRuleViolated},
		{command.ErrRejected, http.StatusUnprocessableEntity, CodeRuleViolated},
		{command.ErrInvalidID, http.StatusBadRequest, CodeMalformed},
		{command.ErrIdempotencyConflict, http.StatusConflict, CodeConflict},
		{command.ErrConflict, http.StatusConflict, CodeConflict},
		{eventstore.ErrWrongVersion, http.StatusConflict, CodeConflict},
		{eventstore.ErrInvalidStreamID, http.StatusBadRequest, CodeMalformed},
		{eventstore.ErrStreamNotFound, http.StatusNotFound, CodeNotFound},
		{eventstore.ErrTooLarge, http.StatusRequestEntityTooLarge, CodeTooLarge},
		{eventstore.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
		{eventstore.ErrClosed, http.StatusServiceUnavailable, CodeUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, CodeUnavailable},
	}
}

// Classify returns err as an *Error: err itself if it is one (errors.As),
// else the status and code of the first mapping that matches, else 500. The
// message of a 5xx is generic, so that internal details do not leak; a 4xx
// carries err's text, which names what the client got wrong.
func Classify(err error, mappings []ErrorMapping) *Error {
	if err == nil {
		return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if d, ok := apierror.DownFrom(err); ok {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: apierror.DownMessage(d),
			Err: err, Dependency: d.Dependency(), RetryAfter: d.RetryAfterSeconds()}
	}
	for _, m := range mappings {
		if errors.Is(err, m.Target) {
			e := &Error{Status: m.Status, Code: m.Code, Message: err.Error(), Err: err}
			if m.Status >= 500 {
				e.Message = "a backing service is unavailable; retry later"
			}
			return e
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error", Err: err}
}

// WriteError writes err as a JSON error body with the status and code
// DefaultErrorMappings give it.
func WriteError(w http.ResponseWriter, err error) {
	WriteErrorWith(w, err, DefaultErrorMappings())
}

// WriteErrorWith writes err as a JSON error body, classified with mappings.
func WriteErrorWith(w http.ResponseWriter, err error, mappings []ErrorMapping) {
	e := Classify(err, mappings)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Status == http.StatusServiceUnavailable {
		retry := "1"
		if e.RetryAfter != "" {
			retry = e.RetryAfter
		}
		h.Set("Retry-After", retry)
	}
	w.WriteHeader(e.Status)
	// The status is already sent; a failed write means the client is gone.
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: e.Message, Code: e.Code, Dependency: e.Dependency})
}

// ErrorBody is the JSON body of every error response.
type ErrorBody = apierror.Body
