package commandapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// ErrorMappings returns, in order, the mappings the API answers errors with:
// the sample's "does not exist" and "already exists" refusals (404, 409),
// then any other domain rule (422), then the command handler's and the event
// store's sentinels. Rows for domain rules answer the rule's own text; every
// other row answers a fixed text, because the handler's and the store's
// errors name streams and Go packages. It returns a new slice each time, so
// callers may extend it freely.
func ErrorMappings() []httpjson.Mapping {
	const (
		notFound = http.StatusNotFound
		conflict = http.StatusConflict
		rule     = http.StatusUnprocessableEntity
		bad      = http.StatusBadRequest
		busy     = http.StatusServiceUnavailable
	)
	return []httpjson.Mapping{
		{Target: cart.ErrCartNotOpen, Status: notFound, Code: httpjson.CodeNotFound},
		{Target: cart.ErrItemNotFound, Status: notFound, Code: httpjson.CodeNotFound},
		{Target: order.ErrNotPlaced, Status: notFound, Code: httpjson.CodeNotFound},
		{Target: customer.ErrNotRegistered, Status: notFound, Code: httpjson.CodeNotFound},
		{Target: customer.ErrReservationNotFound, Status: notFound, Code: httpjson.CodeNotFound},
		{Target: cart.ErrAlreadyOpen, Status: conflict, Code: httpjson.CodeConflict},
		{Target: order.ErrAlreadyPlaced, Status: conflict, Code: httpjson.CodeConflict},
		{Target: customer.ErrAlreadyRegistered, Status: conflict, Code: httpjson.CodeConflict},
		{Target: domain.ErrRuleViolated, Status: rule, Code: httpjson.CodeRuleViolated},
		{Target: command.ErrRejected, Status: rule, Code: httpjson.CodeRuleViolated,
			Message: "the command is refused"},
		{Target: command.ErrInvalidID, Status: bad, Code: httpjson.CodeMalformed,
			Message: "an id must be 1 to 128 bytes of [A-Za-z0-9._~-]"},
		{Target: command.ErrIdempotencyConflict, Status: conflict, Code: httpjson.CodeConflict,
			Message: "this Idempotency-Key was used for a different request"},
		{Target: command.ErrConflict, Status: conflict, Code: httpjson.CodeConflict,
			Message: "too many concurrent changes to this entity; retry"},
		{Target: eventstore.ErrWrongVersion, Status: conflict, Code: httpjson.CodeConflict,
			Message: "the entity changed concurrently; retry"},
		{Target: eventstore.ErrInvalidStreamID, Status: bad, Code: httpjson.CodeMalformed,
			Message: "an id must be 1 to 128 bytes of [A-Za-z0-9._~-]"},
		{Target: eventstore.ErrStreamNotFound, Status: notFound, Code: httpjson.CodeNotFound,
			Message: "not found"},
		{Target: eventstore.ErrTooLarge, Status: http.StatusRequestEntityTooLarge, Code: httpjson.CodeTooLarge,
			Message: "the command's events are too large to store"},
		{Target: eventstore.ErrUnavailable, Status: busy, Code: httpjson.CodeUnavailable},
		{Target: eventstore.ErrClosed, Status: busy, Code: httpjson.CodeUnavailable},
		{Target: context.DeadlineExceeded, Status: busy, Code: httpjson.CodeUnavailable},
	}
}

// WriteError writes err as a JSON error body with the status and code
// ErrorMappings give it.
func WriteError(w http.ResponseWriter, err error) {
	httpjson.WriteError(w, clientError(err), ErrorMappings())
}

// clientError returns the error to classify for the client: a refusal by the
// decider is answered with the domain's own error, whose text is written for
// the client, rather than command.RejectedError's, which names the stream.
func clientError(err error) error {
	if re, ok := errors.AsType[*command.RejectedError](err); ok && errors.Is(re.Err, domain.ErrRuleViolated) {
		return re.Err
	}
	return err
}
