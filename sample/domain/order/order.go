package order

import (
	"errors"
	"fmt"
	"slices"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/sample/domain"
)

// Limits of an order. They are the cart's limits: an order holds what one
// cart held.
const (
	MaxLines          = 100
	MaxQuantity       = 999
	MaxUnitPriceCents = 10_000_000
	MaxProductIDLen   = 64
	// MaxIDLen is the longest order, cart or customer id, in bytes.
	MaxIDLen = 128
	// MaxReasonLen is the longest rejection reason, in bytes.
	MaxReasonLen = 1024
)

// ErrRuleViolated is matched by every error Decide returns for a command the
// order's rules refuse. An HTTP layer maps it to 422.
var ErrRuleViolated = errors.New("order rule violated")

// The specific refusals. Each matches ErrRuleViolated too.
var (
	// ErrNotPlaced means the order was never placed.
	ErrNotPlaced = ruleError("not placed")
	// ErrAlreadyPlaced means Place was sent to an existing order with other
	// contents.
	ErrAlreadyPlaced = ruleError("already placed")
	// ErrNotPending means Confirm or Reject was sent to an order that the
	// other one already ended.
	ErrNotPending = ruleError("not pending")
	// ErrInvalidID means an order, cart or customer id is not 1 to MaxIDLen
	// bytes of [A-Za-z0-9._~-].
	ErrInvalidID = ruleError("invalid id")
	// ErrInvalidItems means Place had no items, too many, or an item with an
	// invalid product id, quantity or price, or a product twice.
	ErrInvalidItems = ruleError("invalid items")
	// ErrTotalMismatch means Place's total is not Σ quantity × unit price.
	ErrTotalMismatch = ruleError("total does not match the items")
	// ErrInvalidReason means a rejection reason is empty or longer than
	// MaxReasonLen.
	ErrInvalidReason = ruleError("invalid reason")
	// ErrUnknownCommand means Decide was given a command it does not know,
	// including a nil Command.
	ErrUnknownCommand = ruleError("unknown command")
)

func ruleError(text string) error { return domain.Rule(ErrRuleViolated, "order: "+text) }

// Status is where an order is in its life.
type Status string

// The statuses of an order. The zero Status is an order never placed.
const (
	StatusNone      Status = ""
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusRejected  Status = "rejected"
)

// Line is one product of an order.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// State is an order as its events left it.
type State struct {
	Status     Status
	OrderID    string
	CartID     string
	CustomerID string
	Items      []Line
	TotalCents int64
	// Reason is why the order was rejected; empty otherwise.
	Reason string
}

// Command is a request to change an order: Place, Confirm or Reject.
type Command interface{ isOrderCommand() }

// Place creates a pending order from a checked-out cart.
type Place struct {
	OrderID    string `json:"order_id"`
	CartID     string `json:"cart_id"`
	CustomerID string `json:"customer_id"`
	Items      []Line `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// Confirm confirms a pending order: the customer's credit is reserved.
type Confirm struct{}

// Reject rejects a pending order for a reason, e.g. credit refused.
type Reject struct {
	Reason string `json:"reason"`
}

func (Place) isOrderCommand()   {}
func (Confirm) isOrderCommand() {}
func (Reject) isOrderCommand()  {}

// Decider is the order's domain logic, for command.NewHandler.
var Decider = command.Decider[State, Command, Event]{
	Initial: func() State { return State{} },
	Decide:  Decide,
	Evolve:  Evolve,
}

// Decide decides the events of cmd on an order in state s, or refuses it with
// an error matching ErrRuleViolated. It never changes s.
func Decide(s State, cmd Command) ([]Event, error) {
	switch c := cmd.(type) {
	case Place:
		return decidePlace(s, c)
	case Confirm:
		switch s.Status {
		case StatusNone:
			return nil, ErrNotPlaced
		case StatusConfirmed:
			return nil, nil
		case StatusRejected:
			return nil, fmt.Errorf("%w: order %q was rejected: %s", ErrNotPending, s.OrderID, s.Reason)
		}
		return []Event{Confirmed{}}, nil
	case Reject:
		switch s.Status {
		case StatusNone:
			return nil, ErrNotPlaced
		case StatusConfirmed:
			return nil, fmt.Errorf("%w: order %q was confirmed", ErrNotPending, s.OrderID)
		case StatusRejected:
			return nil, nil
		}
		if c.Reason == "" || len(c.Reason) > MaxReasonLen {
			return nil, fmt.Errorf("%w: %d bytes, want 1..%d", ErrInvalidReason, len(c.Reason), MaxReasonLen)
		}
		return []Event{Rejected(c)}, nil
	}
	if s.Status == StatusNone {
		return nil, ErrNotPlaced
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func decidePlace(s State, c Place) ([]Event, error) {
	if s.Status != StatusNone {
		if samePlace(s, c) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: order %q is %s with other contents", ErrAlreadyPlaced, s.OrderID, s.Status)
	}
	for _, id := range []struct{ name, value string }{{"order_id", c.OrderID}, {"cart_id", c.CartID}, {"customer_id", c.CustomerID}} {
		if !validID(id.value, MaxIDLen) {
			return nil, fmt.Errorf("%w: %s %q", ErrInvalidID, id.name, id.value)
		}
	}
	if len(c.Items) == 0 || len(c.Items) > MaxLines {
		return nil, fmt.Errorf("%w: %d items, want 1..%d", ErrInvalidItems, len(c.Items), MaxLines)
	}
	var total int64
	seen := make(map[string]bool, len(c.Items))
	for i, l := range c.Items {
		switch {
		case !validID(l.ProductID, MaxProductIDLen):
			return nil, fmt.Errorf("%w: item %d: product id %q", ErrInvalidItems, i, l.ProductID)
		case seen[l.ProductID]:
			return nil, fmt.Errorf("%w: item %d: product %q appears twice", ErrInvalidItems, i, l.ProductID)
		case l.Quantity < 1 || l.Quantity > MaxQuantity:
			return nil, fmt.Errorf("%w: item %d: quantity %d, want 1..%d", ErrInvalidItems, i, l.Quantity, MaxQuantity)
		case l.UnitPriceCents < 1 || l.UnitPriceCents > MaxUnitPriceCents:
			return nil, fmt.Errorf("%w: item %d: unit price %d cents, want 1..%d", ErrInvalidItems, i, l.UnitPriceCents, MaxUnitPriceCents)
		}
		seen[l.ProductID] = true
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	if total != c.TotalCents {
		return nil, fmt.Errorf("%w: total %d cents, the items make %d", ErrTotalMismatch, c.TotalCents, total)
	}
	return []Event{Placed{
		OrderID:    c.OrderID,
		CartID:     c.CartID,
		CustomerID: c.CustomerID,
		Items:      slices.Clone(c.Items),
		TotalCents: c.TotalCents,
	}}, nil
}

func samePlace(s State, c Place) bool {
	return s.OrderID == c.OrderID && s.CartID == c.CartID && s.CustomerID == c.CustomerID &&
		s.TotalCents == c.TotalCents && slices.Equal(s.Items, c.Items)
}

// Evolve applies one event to an order. It returns a new State and leaves s
// unchanged. Unknown events leave the state as it is.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case Placed:
		s = State{
			Status:     StatusPending,
			OrderID:    e.OrderID,
			CartID:     e.CartID,
			CustomerID: e.CustomerID,
			Items:      slices.Clone(e.Items),
			TotalCents: e.TotalCents,
		}
	case Confirmed:
		s.Status = StatusConfirmed
	case Rejected:
		s.Status = StatusRejected
		s.Reason = e.Reason
	}
	return s
}

// validID reports whether id is 1 to max bytes of [A-Za-z0-9._~-].
func validID(id string, max int) bool {
	if id == "" || len(id) > max {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}
