package customer

import "github.com/eventline/eventline/eventstore"

// Event is something that happened to a customer: Registered, CreditReserved,
// CreditRefused or CreditReleased.
type Event interface{ isCustomerEvent() }

// Registered is the first event of a customer.
type Registered struct {
	CreditLimitCents int64 `json:"credit_limit_cents"`
}

// CreditReserved reserves AmountCents of the customer's credit for an order.
type CreditReserved struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// CreditRefused records that an order asked for more credit than was
// available.
type CreditRefused struct {
	OrderID        string `json:"order_id"`
	AmountCents    int64  `json:"amount_cents"`
	AvailableCents int64  `json:"available_cents"`
	Reason         string `json:"reason"`
}

// CreditReleased returns an order's reserved credit.
type CreditReleased struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

func (Registered) isCustomerEvent()     {}
func (CreditReserved) isCustomerEvent() {}
func (CreditRefused) isCustomerEvent()  {}
func (CreditReleased) isCustomerEvent() {}

// Type names of the customer's events in the log. They are stable.
const (
	TypeRegistered     = "customer.registered"
	TypeCreditReserved = "customer.credit_reserved"
	TypeCreditRefused  = "customer.credit_refused"
	TypeCreditReleased = "customer.credit_released"
)

// RegisterEvents maps every customer event to its type name in reg.
func RegisterEvents(reg *eventstore.Registry) {
	eventstore.Register[Registered](reg, TypeRegistered)
	eventstore.Register[CreditReserved](reg, TypeCreditReserved)
	eventstore.Register[CreditRefused](reg, TypeCreditRefused)
	eventstore.Register[CreditReleased](reg, TypeCreditReleased)
}
