package cart

import "github.com/eventline/eventline/eventstore"

// Event is something that happened to a cart: Opened, ItemAdded,
// QuantityChanged, ItemRemoved, CheckedOut or Reopened. Their type names in
// the log are listed by Register.
type Event interface{ isCartEvent() }

// Opened is the first event of a cart.
type Opened struct {
	CustomerID string `json:"customer_id"`
}

// ItemAdded adds Quantity units to the product's line, creating the line when
// the product is new to the cart.
type ItemAdded struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// QuantityChanged sets a line's quantity.
type QuantityChanged struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// ItemRemoved removes a product's line.
type ItemRemoved struct {
	ProductID string `json:"product_id"`
}

// CheckedOut closes the cart for an order. It carries everything the order
// side needs to place the order, except the cart id, which is the stream's.
type CheckedOut struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Items      []Line `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// Reopened opens a checked-out cart again, with its items, because its order
// was rejected.
type Reopened struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason,omitempty"`
}

func (Opened) isCartEvent()          {}
func (ItemAdded) isCartEvent()       {}
func (QuantityChanged) isCartEvent() {}
func (ItemRemoved) isCartEvent()     {}
func (CheckedOut) isCartEvent()      {}
func (Reopened) isCartEvent()        {}

// Type names of the cart's events in the log. They are stable: renaming one
// needs an upcaster (eventstore.Registry.Upcast).
const (
	TypeOpened          = "cart.opened"
	TypeItemAdded       = "cart.item_added"
	TypeQuantityChanged = "cart.quantity_changed"
	TypeItemRemoved     = "cart.item_removed"
	TypeCheckedOut      = "cart.checked_out"
	TypeReopened        = "cart.reopened"
)

// RegisterEvents maps every cart event to its type name in reg.
func RegisterEvents(reg *eventstore.Registry) {
	eventstore.Register[Opened](reg, TypeOpened)
	eventstore.Register[ItemAdded](reg, TypeItemAdded)
	eventstore.Register[QuantityChanged](reg, TypeQuantityChanged)
	eventstore.Register[ItemRemoved](reg, TypeItemRemoved)
	eventstore.Register[CheckedOut](reg, TypeCheckedOut)
	eventstore.Register[Reopened](reg, TypeReopened)
}
