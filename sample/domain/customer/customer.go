package customer

import (
	"errors"
	"fmt"
	"maps"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/sample/domain"
)

// Limits of a customer.
const (
	// MaxCreditLimitCents is the highest credit limit. Reservations never
	// exceed the limit, so sums of amounts stay far inside int64.
	MaxCreditLimitCents = 1_000_000_000_000_000
	// MaxAmountCents is the largest amount one reservation may ask for.
	MaxAmountCents = MaxCreditLimitCents
	// MaxIDLen is the longest order id, in bytes.
	MaxIDLen = 128
)

// ErrRuleViolated is matched by every error Decide returns for a command the
// customer's rules refuse. An HTTP layer maps it to 422.
var ErrRuleViolated = errors.New("customer rule violated")

// The specific refusals. Each matches ErrRuleViolated too.
var (
	// ErrNotRegistered means the customer was never registered.
	ErrNotRegistered = ruleError("not registered")
	// ErrAlreadyRegistered means Register was sent to an existing customer.
	ErrAlreadyRegistered = ruleError("already registered")
	// ErrInvalidLimit means a credit limit is not 0..MaxCreditLimitCents.
	ErrInvalidLimit = ruleError("invalid credit limit")
	// ErrInvalidAmount means a reservation amount is not 1..MaxAmountCents.
	ErrInvalidAmount = ruleError("invalid amount")
	// ErrInvalidOrderID means an order id is not 1 to MaxIDLen bytes of
	// [A-Za-z0-9._~-].
	ErrInvalidOrderID = ruleError("invalid order id")
	// ErrReservationNotFound means ReleaseCredit named an order the customer
	// never reserved credit for.
	ErrReservationNotFound = ruleError("no reservation for that order")
	// ErrUnknownCommand means Decide was given a command it does not know,
	// including a nil Command.
	ErrUnknownCommand = ruleError("unknown command")
)

func ruleError(text string) error { return domain.Rule(ErrRuleViolated, "customer: "+text) }

// ReservationStatus is what became of a request to reserve credit for an
// order.
type ReservationStatus string

// The statuses of a reservation.
const (
	Reserved ReservationStatus = "reserved"
	Refused  ReservationStatus = "refused"
	Released ReservationStatus = "released"
)

// Reservation is the credit asked for one order and what became of it.
type Reservation struct {
	AmountCents int64
	Status      ReservationStatus
}

// State is a customer as their events left them. Evolve never changes the
// Orders map of the state it is given.
type State struct {
	Registered       bool
	CreditLimitCents int64
	// ReservedCents is the sum of the amounts of reservations in status
	// Reserved; it never exceeds CreditLimitCents.
	ReservedCents int64
	// Orders holds every order credit was asked for, by order id.
	Orders map[string]Reservation
}

// AvailableCents is the credit left to reserve.
func (s State) AvailableCents() int64 { return s.CreditLimitCents - s.ReservedCents }

// Command is a request to a customer: Register, ReserveCredit or
// ReleaseCredit.
type Command interface{ isCustomerCommand() }

// Register creates a customer with a credit limit.
type Register struct {
	CreditLimitCents int64 `json:"credit_limit_cents"`
}

// ReserveCredit asks to reserve AmountCents of the customer's credit for an
// order.
type ReserveCredit struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// ReleaseCredit returns the credit reserved for an order.
type ReleaseCredit struct {
	OrderID string `json:"order_id"`
}

func (Register) isCustomerCommand()      {}
func (ReserveCredit) isCustomerCommand() {}
func (ReleaseCredit) isCustomerCommand() {}

// Decider is the customer's domain logic, for command.NewHandler.
var Decider = command.Decider[State, Command, Event]{
	Initial: func() State { return State{} },
	Decide:  Decide,
	Evolve:  Evolve,
}

// Decide decides the events of cmd for a customer in state s, or refuses it
// with an error matching ErrRuleViolated. It never changes s.
func Decide(s State, cmd Command) ([]Event, error) {
	if _, ok := cmd.(Register); !ok && !s.Registered {
		return nil, ErrNotRegistered
	}
	switch c := cmd.(type) {
	case Register:
		if s.Registered {
			return nil, ErrAlreadyRegistered
		}
		if c.CreditLimitCents < 0 || c.CreditLimitCents > MaxCreditLimitCents {
			return nil, fmt.Errorf("%w: %d cents, want 0..%d", ErrInvalidLimit, c.CreditLimitCents, int64(MaxCreditLimitCents))
		}
		return []Event{Registered(c)}, nil
	case ReserveCredit:
		return decideReserve(s, c)
	case ReleaseCredit:
		if !validID(c.OrderID) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidOrderID, c.OrderID)
		}
		r, ok := s.Orders[c.OrderID]
		if !ok {
			return nil, fmt.Errorf("%w: order %q", ErrReservationNotFound, c.OrderID)
		}
		if r.Status != Reserved {
			return nil, nil
		}
		return []Event{CreditReleased{OrderID: c.OrderID, AmountCents: r.AmountCents}}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func decideReserve(s State, c ReserveCredit) ([]Event, error) {
	if !validID(c.OrderID) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidOrderID, c.OrderID)
	}
	if _, ok := s.Orders[c.OrderID]; ok {
		return nil, nil
	}
	if c.AmountCents < 1 || c.AmountCents > MaxAmountCents {
		return nil, fmt.Errorf("%w: %d cents for order %q, want 1..%d", ErrInvalidAmount, c.AmountCents, c.OrderID, int64(MaxAmountCents))
	}
	if available := s.AvailableCents(); c.AmountCents > available {
		return []Event{CreditRefused{
			OrderID:        c.OrderID,
			AmountCents:    c.AmountCents,
			AvailableCents: available,
			Reason:         fmt.Sprintf("credit limit exceeded: %d cents requested, %d available", c.AmountCents, available),
		}}, nil
	}
	return []Event{CreditReserved(c)}, nil
}

// Evolve applies one event to a customer. It returns a new State and leaves
// s, including its Orders map, unchanged. Unknown events leave the state as
// it is.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case Registered:
		s.Registered = true
		s.CreditLimitCents = e.CreditLimitCents
	case CreditReserved:
		s.Orders = withOrder(s.Orders, e.OrderID, Reservation{AmountCents: e.AmountCents, Status: Reserved})
		s.ReservedCents += e.AmountCents
	case CreditRefused:
		s.Orders = withOrder(s.Orders, e.OrderID, Reservation{AmountCents: e.AmountCents, Status: Refused})
	case CreditReleased:
		if r, ok := s.Orders[e.OrderID]; ok && r.Status == Reserved {
			s.Orders = withOrder(s.Orders, e.OrderID, Reservation{AmountCents: r.AmountCents, Status: Released})
			s.ReservedCents -= r.AmountCents
		}
	}
	return s
}

func withOrder(orders map[string]Reservation, id string, r Reservation) map[string]Reservation {
	next := maps.Clone(orders)
	if next == nil {
		next = make(map[string]Reservation, 1)
	}
	next[id] = r
	return next
}

// validID reports whether id is 1 to MaxIDLen bytes of [A-Za-z0-9._~-].
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
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
