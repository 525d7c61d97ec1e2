package cart

import (
	"errors"
	"fmt"
	"slices"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/sample/domain"
)

// Limits of a cart.
const (
	// MaxLines is the most lines (distinct products) a cart holds.
	MaxLines = 100
	// MaxQuantity is the largest quantity of one line.
	MaxQuantity = 999
	// MaxUnitPriceCents is the highest unit price. With MaxLines and
	// MaxQuantity it bounds a cart's total far below the int64 range.
	MaxUnitPriceCents = 10_000_000
	// MaxProductIDLen is the longest product id, in bytes.
	MaxProductIDLen = 64
	// MaxIDLen is the longest customer or order id, in bytes: the entity id
	// limit of command.Handler, since both name streams.
	MaxIDLen = 128
	// MaxReasonLen is the longest reason a Reopen may carry, in bytes.
	MaxReasonLen = 1024
)

// ErrRuleViolated is matched by every error Decide returns for a command the
// cart's rules refuse. An HTTP layer maps it to 422.
var ErrRuleViolated = errors.New("cart rule violated")

// The specific refusals. Each matches ErrRuleViolated too.
var (
	// ErrCartNotOpen means the cart was never opened.
	ErrCartNotOpen = ruleError("not open")
	// ErrAlreadyOpen means Open was sent to a cart that exists.
	ErrAlreadyOpen = ruleError("already open")
	// ErrCheckedOut means the cart is checked out and cannot change.
	ErrCheckedOut = ruleError("checked out")
	// ErrNotCheckedOut means Reopen was sent to a cart that is not checked out
	// with the order named.
	ErrNotCheckedOut = ruleError("not checked out for that order")
	// ErrEmptyCart means CheckOut was sent to a cart with no lines.
	ErrEmptyCart = ruleError("empty")
	// ErrQuantityRange means a line's quantity would leave 1..MaxQuantity.
	ErrQuantityRange = ruleError("quantity out of range")
	// ErrTooManyLines means a new line would exceed MaxLines.
	ErrTooManyLines = ruleError("too many lines")
	// ErrItemNotFound means the cart has no line for the product.
	ErrItemNotFound = ruleError("item not in cart")
	// ErrInvalidPrice means a unit price is not 1..MaxUnitPriceCents.
	ErrInvalidPrice = ruleError("invalid unit price")
	// ErrPriceMismatch means a product already in the cart was added at a
	// different unit price.
	ErrPriceMismatch = ruleError("product already in cart at another price")
	// ErrInvalidProductID means a product id is empty, too long or uses a
	// byte outside [A-Za-z0-9._~-].
	ErrInvalidProductID = ruleError("invalid product id")
	// ErrInvalidCustomerID means a customer id is not a valid entity id.
	ErrInvalidCustomerID = ruleError("invalid customer id")
	// ErrInvalidOrderID means an order id is not a valid entity id.
	ErrInvalidOrderID = ruleError("invalid order id")
	// ErrInvalidReason means a Reopen reason is longer than MaxReasonLen.
	ErrInvalidReason = ruleError("invalid reason")
	// ErrUnknownCommand means Decide was given a command it does not know,
	// including a nil Command.
	ErrUnknownCommand = ruleError("unknown command")
)

// ruleError is a sentinel that matches ErrRuleViolated without repeating its
// text in every message.
func ruleError(text string) error { return domain.Rule(ErrRuleViolated, "cart: "+text) }

// Status is where a cart is in its life.
type Status string

// The statuses of a cart. The zero Status is a cart that was never opened.
const (
	StatusNone       Status = ""
	StatusOpen       Status = "open"
	StatusCheckedOut Status = "checked_out"
)

// Line is one product in a cart.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// State is a cart as its events left it. Lines keep the order in which their
// products were first added. Treat a State as a value: Evolve never changes
// the Lines of the state it is given, so older states stay valid.
type State struct {
	Status     Status
	CustomerID string
	Lines      []Line
	// TotalCents is Σ Quantity × UnitPriceCents over Lines.
	TotalCents int64
	// OrderID is the order of the current checkout; empty unless checked out.
	OrderID string
	// ReopenedOrders are the orders whose rejection reopened the cart, so that
	// a repeated Reopen is recognised.
	ReopenedOrders []string
}

// line returns the index of productID's line, or -1.
func (s State) line(productID string) int {
	return slices.IndexFunc(s.Lines, func(l Line) bool { return l.ProductID == productID })
}

// Command is a request to change a cart: Open, AddItem, ChangeQuantity,
// RemoveItem, CheckOut or Reopen.
type Command interface{ isCartCommand() }

// Open opens a new cart for a customer.
type Open struct {
	CustomerID string `json:"customer_id"`
}

// AddItem adds Quantity units of a product to the cart.
type AddItem struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// ChangeQuantity sets the quantity of a product already in the cart.
type ChangeQuantity struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// RemoveItem removes a product's line from the cart.
type RemoveItem struct {
	ProductID string `json:"product_id"`
}

// CheckOut closes the cart for an order whose id the caller chose.
type CheckOut struct {
	OrderID string `json:"order_id"`
}

// Reopen undoes the checkout for OrderID after that order was rejected.
type Reopen struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason,omitempty"`
}

func (Open) isCartCommand()           {}
func (AddItem) isCartCommand()        {}
func (ChangeQuantity) isCartCommand() {}
func (RemoveItem) isCartCommand()     {}
func (CheckOut) isCartCommand()       {}
func (Reopen) isCartCommand()         {}

// Decider is the cart's domain logic, for command.NewHandler.
var Decider = command.Decider[State, Command, Event]{
	Initial: func() State { return State{} },
	Decide:  Decide,
	Evolve:  Evolve,
}

// Decide decides the events of cmd on a cart in state s, or refuses it with
// an error matching ErrRuleViolated. It never changes s.
func Decide(s State, cmd Command) ([]Event, error) {
	if _, ok := cmd.(Open); !ok && s.Status == StatusNone {
		return nil, ErrCartNotOpen
	}
	switch c := cmd.(type) {
	case Open:
		return decideOpen(s, c)
	case AddItem:
		return decideAddItem(s, c)
	case ChangeQuantity:
		return decideChangeQuantity(s, c)
	case RemoveItem:
		return decideRemoveItem(s, c)
	case CheckOut:
		return decideCheckOut(s, c)
	case Reopen:
		return decideReopen(s, c)
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func decideOpen(s State, c Open) ([]Event, error) {
	if s.Status != StatusNone {
		return nil, fmt.Errorf("%w: for customer %q", ErrAlreadyOpen, s.CustomerID)
	}
	if !validID(c.CustomerID, MaxIDLen) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidCustomerID, c.CustomerID)
	}
	return []Event{Opened{CustomerID: c.CustomerID}}, nil
}

func decideAddItem(s State, c AddItem) ([]Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if err := validateProductID(c.ProductID); err != nil {
		return nil, err
	}
	if c.UnitPriceCents < 1 || c.UnitPriceCents > MaxUnitPriceCents {
		return nil, fmt.Errorf("%w: %d cents for product %q, want 1..%d", ErrInvalidPrice, c.UnitPriceCents, c.ProductID, MaxUnitPriceCents)
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return nil, fmt.Errorf("%w: adding %d of product %q, want 1..%d", ErrQuantityRange, c.Quantity, c.ProductID, MaxQuantity)
	}
	if i := s.line(c.ProductID); i >= 0 {
		l := s.Lines[i]
		if l.UnitPriceCents != c.UnitPriceCents {
			return nil, fmt.Errorf("%w: product %q is in the cart at %d cents, added at %d",
				ErrPriceMismatch, c.ProductID, l.UnitPriceCents, c.UnitPriceCents)
		}
		if l.Quantity+c.Quantity > MaxQuantity {
			return nil, fmt.Errorf("%w: product %q has %d, adding %d exceeds %d",
				ErrQuantityRange, c.ProductID, l.Quantity, c.Quantity, MaxQuantity)
		}
	} else if len(s.Lines) >= MaxLines {
		return nil, fmt.Errorf("%w: the cart has %d lines, adding product %q", ErrTooManyLines, len(s.Lines), c.ProductID)
	}
	return []Event{ItemAdded(c)}, nil
}

func decideChangeQuantity(s State, c ChangeQuantity) ([]Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if err := validateProductID(c.ProductID); err != nil {
		return nil, err
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return nil, fmt.Errorf("%w: %d of product %q, want 1..%d (remove the item instead of setting 0)",
			ErrQuantityRange, c.Quantity, c.ProductID, MaxQuantity)
	}
	i := s.line(c.ProductID)
	if i < 0 {
		return nil, fmt.Errorf("%w: product %q", ErrItemNotFound, c.ProductID)
	}
	if s.Lines[i].Quantity == c.Quantity {
		return nil, nil
	}
	return []Event{QuantityChanged(c)}, nil
}

func decideRemoveItem(s State, c RemoveItem) ([]Event, error) {
	if err := mustBeOpen(s); err != nil {
		return nil, err
	}
	if err := validateProductID(c.ProductID); err != nil {
		return nil, err
	}
	if s.line(c.ProductID) < 0 {
		return nil, fmt.Errorf("%w: product %q", ErrItemNotFound, c.ProductID)
	}
	return []Event{ItemRemoved(c)}, nil
}

func decideCheckOut(s State, c CheckOut) ([]Event, error) {
	if s.Status == StatusCheckedOut {
		if c.OrderID == s.OrderID {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: for order %q", ErrCheckedOut, s.OrderID)
	}
	if !validID(c.OrderID, MaxIDLen) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidOrderID, c.OrderID)
	}
	if len(s.Lines) == 0 {
		return nil, ErrEmptyCart
	}
	return []Event{CheckedOut{
		OrderID:    c.OrderID,
		CustomerID: s.CustomerID,
		Items:      slices.Clone(s.Lines),
		TotalCents: s.TotalCents,
	}}, nil
}

func decideReopen(s State, c Reopen) ([]Event, error) {
	if len(c.Reason) > MaxReasonLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidReason, len(c.Reason), MaxReasonLen)
	}
	if s.Status == StatusCheckedOut && s.OrderID == c.OrderID {
		return []Event{Reopened(c)}, nil
	}
	if slices.Contains(s.ReopenedOrders, c.OrderID) {
		return nil, nil
	}
	if s.Status == StatusCheckedOut {
		return nil, fmt.Errorf("%w: reopen for order %q, checked out for order %q", ErrNotCheckedOut, c.OrderID, s.OrderID)
	}
	return nil, fmt.Errorf("%w: reopen for order %q, the cart is open", ErrNotCheckedOut, c.OrderID)
}

func mustBeOpen(s State) error {
	if s.Status == StatusCheckedOut {
		return fmt.Errorf("%w: for order %q", ErrCheckedOut, s.OrderID)
	}
	return nil
}

// Evolve applies one event to a cart. It returns a new State and leaves s,
// including its slices, unchanged. Unknown events leave the state as it is.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case Opened:
		s.Status = StatusOpen
		s.CustomerID = e.CustomerID
	case ItemAdded:
		s.Lines = slices.Clone(s.Lines)
		if i := s.line(e.ProductID); i >= 0 {
			s.Lines[i].Quantity += e.Quantity
		} else {
			s.Lines = append(s.Lines, Line(e))
		}
	case QuantityChanged:
		if i := s.line(e.ProductID); i >= 0 {
			s.Lines = slices.Clone(s.Lines)
			s.Lines[i].Quantity = e.Quantity
		}
	case ItemRemoved:
		if i := s.line(e.ProductID); i >= 0 {
			s.Lines = slices.Delete(slices.Clone(s.Lines), i, i+1)
		}
	case CheckedOut:
		s.Status = StatusCheckedOut
		s.OrderID = e.OrderID
	case Reopened:
		s.Status = StatusOpen
		s.OrderID = ""
		s.ReopenedOrders = append(slices.Clone(s.ReopenedOrders), e.OrderID)
	default:
		return s
	}
	s.TotalCents = total(s.Lines)
	return s
}

// total is recomputed, not adjusted, so that it cannot drift from the lines.
func total(lines []Line) int64 {
	var t int64
	for _, l := range lines {
		t += int64(l.Quantity) * l.UnitPriceCents
	}
	return t
}

// ValidateProductID returns an error matching ErrInvalidProductID unless id is
// 1 to MaxProductIDLen bytes of [A-Za-z0-9._~-].
func ValidateProductID(id string) error { return validateProductID(id) }

func validateProductID(id string) error {
	if !validID(id, MaxProductIDLen) {
		return fmt.Errorf("%w: %q: want 1..%d bytes of [A-Za-z0-9._~-]", ErrInvalidProductID, id, MaxProductIDLen)
	}
	return nil
}

// validID reports whether id is 1 to max bytes of [A-Za-z0-9._~-], the bytes
// that are safe in stream names, Redis keys and URL paths unescaped.
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
