package schema

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/query"
)

// Names of the sample's projections, as query.Resolve and the Redis keys know
// them.
const (
	Carts     = "carts"
	Customers = "customers"
	Products  = "products"
	Orders    = "orders"
)

// Version is the schema version of every read model this package describes.
// Changing a layout or a document means a new version, built beside the old
// one by the projection runners.
const Version = 1

// Statuses of a cart and of an order, as the documents spell them.
const (
	CartOpen       = "open"
	CartCheckedOut = "checked_out"

	OrderPending   = "pending"
	OrderConfirmed = "confirmed"
	OrderRejected  = "rejected"
)

// Key parts of the read models, after the version prefix
// "{el:<projection>}:v<n>:" (query.Key).
const (
	// PartCart + cart id: a Cart as JSON (projection carts).
	PartCart = "cart"
	// PartOrder + order id: an Order as JSON (projection orders); in
	// projection products, the lines of a checked-out cart's order as JSON,
	// kept until the cart is reopened.
	PartOrder = "order"
	// PartCustomer + customer id + PartCarts / PartOrders / PartCredit: a
	// customer's carts and orders (sorted sets scored by the position of the
	// event that created them) and credit (hash) (projection customers).
	PartCustomer = "customer"
	PartCarts    = "carts"
	PartOrders   = "orders"
	PartCredit   = "credit"
	// PartUnits: the sorted set product id → units in checked-out carts
	// (projection products).
	PartUnits = "units"
)

// Fields of a customer's credit hash.
const (
	FieldCreditLimit = "credit_limit_cents"
	FieldReserved    = "reserved_cents"
)

// Line is one product of a cart or an order.
type Line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Cart is the cart detail document, stored and served as it is.
type Cart struct {
	CartID     string `json:"cart_id"`
	CustomerID string `json:"customer_id"`
	// Status is CartOpen or CartCheckedOut.
	Status string `json:"status"`
	// Items keep the order in which their products were first added; a
	// product removed and added again goes last.
	Items      []Line `json:"items"`
	TotalCents int64  `json:"total_cents"`
	// Version is the version of the cart's stream the document reflects.
	Version uint64 `json:"version"`
	// OrderID is the order of the current checkout; empty while open.
	OrderID string `json:"order_id,omitempty"`
}

// Order is the order detail document, stored and served as it is.
type Order struct {
	OrderID    string `json:"order_id"`
	CartID     string `json:"cart_id"`
	CustomerID string `json:"customer_id"`
	// Status is OrderPending, OrderConfirmed or OrderRejected.
	Status string `json:"status"`
	// Reason is why the order was rejected; empty otherwise.
	Reason     string    `json:"reason,omitempty"`
	Items      []Line    `json:"items"`
	TotalCents int64     `json:"total_cents"`
	PlacedAt   time.Time `json:"placed_at"`
}

// Customer is what the read side knows of a customer: the carts they opened
// and the orders they placed, oldest first, and their credit when they are
// registered.
type Customer struct {
	CustomerID string   `json:"customer_id"`
	Carts      []string `json:"carts"`
	Orders     []string `json:"orders"`
	// Registered is false for a customer known only from their carts; the
	// credit fields are then zero.
	Registered       bool  `json:"registered"`
	CreditLimitCents int64 `json:"credit_limit_cents"`
	ReservedCents    int64 `json:"reserved_cents"`
}

// ProductUnits is a product's line of the leaderboard.
type ProductUnits struct {
	ProductID string `json:"product_id"`
	Units     int64  `json:"units"`
}

// ReadCart returns cart id from v, a view of projection Carts. An unknown
// cart gives an error matching query.ErrNotFound.
func ReadCart(ctx context.Context, v *query.View, id string) (Cart, error) {
	var c Cart
	if err := v.GetJSON(ctx, &c, PartCart, id); err != nil {
		return Cart{}, err
	}
	if c.Items == nil {
		c.Items = []Line{}
	}
	return c, nil
}

// ReadOrder returns order id from v, a view of projection Orders. An unknown
// order gives an error matching query.ErrNotFound.
func ReadOrder(ctx context.Context, v *query.View, id string) (Order, error) {
	var o Order
	if err := v.GetJSON(ctx, &o, PartOrder, id); err != nil {
		return Order{}, err
	}
	if o.Items == nil {
		o.Items = []Line{}
	}
	return o, nil
}

// ReadCustomer returns customer id from v, a view of projection Customers,
// read from rdb in one MULTI/EXEC so that carts, orders and credit come from
// the same committed batch. A customer with no cart, no order and no
// registration gives an error matching query.ErrNotFound.
func ReadCustomer(ctx context.Context, rdb redis.Cmdable, v *query.View, id string) (Customer, error) {
	var carts, orders *redis.StringSliceCmd
	var credit *redis.MapStringStringCmd
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		carts = p.ZRange(ctx, v.Key(PartCustomer, id, PartCarts), 0, -1)
		orders = p.ZRange(ctx, v.Key(PartCustomer, id, PartOrders), 0, -1)
		credit = p.HGetAll(ctx, v.Key(PartCustomer, id, PartCredit))
		return nil
	})
	if err != nil {
		return Customer{}, fmt.Errorf("read customer %q: %w", id, err)
	}
	c := Customer{CustomerID: id, Carts: carts.Val(), Orders: orders.Val()}
	if c.Carts == nil {
		c.Carts = []string{}
	}
	if c.Orders == nil {
		c.Orders = []string{}
	}
	h := credit.Val()
	if limit, ok := h[FieldCreditLimit]; ok {
		c.Registered = true
		if c.CreditLimitCents, err = strconv.ParseInt(limit, 10, 64); err != nil {
			return Customer{}, fmt.Errorf("read customer %q: credit limit %q: %w", id, limit, err)
		}
	}
	if r, ok := h[FieldReserved]; ok {
		if c.ReservedCents, err = strconv.ParseInt(r, 10, 64); err != nil {
			return Customer{}, fmt.Errorf("read customer %q: reserved %q: %w", id, r, err)
		}
	}
	if len(c.Carts) == 0 && len(c.Orders) == 0 && len(h) == 0 {
		return Customer{}, fmt.Errorf("%w: customer %q", query.ErrNotFound, id)
	}
	return c, nil
}

// TopProducts returns the limit products with the most units in checked-out
// carts, most first; products with equal units come in descending product id
// order (Redis' order for equal scores read in reverse). limit < 1 gives none.
func TopProducts(ctx context.Context, rdb redis.Cmdable, v *query.View, limit int) ([]ProductUnits, error) {
	out := []ProductUnits{}
	if limit < 1 {
		return out, nil
	}
	zs, err := rdb.ZRevRangeWithScores(ctx, v.Key(PartUnits), 0, int64(limit-1)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read top products: %w", err)
	}
	for _, z := range zs {
		id, _ := z.Member.(string)
		out = append(out, ProductUnits{ProductID: id, Units: int64(z.Score)})
	}
	return out, nil
}
