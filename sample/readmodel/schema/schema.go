package schema

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
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

// Schema versions of the read models. Changing a layout or a document means
// a new version, which the projection runners build beside the old one and
// switch to once it has caught up (blue/green). Version 2 of carts, products
// and orders made them write-only (no read of Redis while applying).
const (
	CartsVersion     = 2
	CustomersVersion = 1
	ProductsVersion  = 2
	OrdersVersion    = 2
)

// CartsVersionFor returns the version of the carts model split into n
// partitions. The partition count is fixed per version (the runners record
// it in the projection's query.PartitionsKey, and readers learn it from
// there), so every n has a version of its own: CartsVersion*1000 + n, except
// that CartsVersion 2 unpartitioned keeps the version 2 it had before
// partitions existed, and with it its keys. Raising n therefore deploys a
// newer version, which the runners build beside the live one and switch to
// once it has caught up; lowering n within one CartsVersion would be an older
// version, which the runners refuse (superseded): lower it together with a
// bump of CartsVersion. n < 1 counts as 1.
func CartsVersionFor(n int) int {
	n = max(n, 1)
	if CartsVersion == 2 && n == 1 {
		return CartsVersion
	}
	return CartsVersion*1000 + n
}

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
	// PartCart + cart id: a cart's hash (projection carts; fields below).
	PartCart = "cart"
	// PartOrder + order id: an order's hash (projection orders; fields
	// below).
	PartOrder = "order"
	// PartCheckout + cart id: the hash product id → units of the cart's
	// current checkout (projection products), kept until the cart is
	// reopened.
	PartCheckout = "checkout"
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

// Fields of a cart's hash. Each product in the cart has three fields, its id
// after a prefix: quantity, unit price, and the stream version of the
// product's first addition (which orders the items: a product removed and
// added again goes last).
const (
	FieldCustomerID  = "customer_id"
	FieldStatus      = "status"
	FieldVersion     = "version"
	FieldOrderID     = "order_id"
	PrefixQuantity   = "q:"
	PrefixUnitPrice  = "p:"
	PrefixFirstAdded = "o:"
)

// Fields of an order's hash besides FieldStatus: the order as its first
// event placed it (an Order as JSON, status pending), and the reason of a
// rejection. The hash's status and reason override the document's.
const (
	FieldOrderDoc = "doc"
	FieldReason   = "reason"
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

// Every reader below reads its document and the checkpoint of the view's
// build in one MULTI/EXEC, one round trip: a runner writes a batch and its
// checkpoint in one transaction too, so the position a reader returns is
// exactly the one the document is at.

// readAt runs the reads queue adds and the read of the checkpoint of
// partition part of v's build (the zero Partition: the build's checkpoint) in
// one MULTI/EXEC, then decodes the reads with the function queue returned. The
// reads must be keys of that partition: one hash tag, one cluster slot.
func readAt[T any](ctx context.Context, rdb redis.Cmdable, v *query.View, part query.Partition, what string,
	queue func(p redis.Pipeliner) func() (T, error)) (T, eventstore.Position, error) {
	var zero T
	var decode func() (T, error)
	var cp *redis.StringCmd
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		decode = queue(p)
		cp = p.HGet(ctx, query.PartitionCheckpointKey(v.Name, v.Build(), part), query.FieldPosition)
		return nil
	})
	// A missing checkpoint (nothing applied yet) is redis.Nil, and so is
	// the whole pipeline's error then; every read's own error is checked
	// by decode.
	if err != nil && !errors.Is(err, redis.Nil) {
		return zero, eventstore.Position{}, fmt.Errorf("read %s: %w", what, err)
	}
	pos := eventstore.Start
	switch s, err := cp.Result(); {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return zero, eventstore.Position{}, fmt.Errorf("read %s: checkpoint: %w", what, err)
	default:
		if pos, err = eventstore.ParsePosition(s); err != nil {
			return zero, eventstore.Position{}, fmt.Errorf("read %s: checkpoint %q: %w", what, s, err)
		}
	}
	t, err := decode()
	if err != nil {
		return zero, eventstore.Position{}, err
	}
	return t, pos, nil
}

// ReadCart returns cart id from v, a view of projection Carts, read from rdb
// with one HGETALL, and the position of the model it was read at: the items
// in the order of their first addition, and the total computed from them as
// the cart's decider does. An unknown cart gives an error matching
// query.ErrNotFound. On a partitioned build the cart is read from its
// partition (the cart id is the partition key, see readmodel.CartPartitionKey), with
// that partition's checkpoint: the position is the partition's, which has
// applied every record of the log up to it.
func ReadCart(ctx context.Context, rdb redis.Cmdable, v *query.View, id string) (Cart, eventstore.Position, error) {
	key := v.KeyFor(id, PartCart, id)
	return readAt(ctx, rdb, v, v.PartitionOf(id), "cart "+strconv.Quote(id), func(p redis.Pipeliner) func() (Cart, error) {
		res := p.HGetAll(ctx, key)
		return func() (Cart, error) {
			h, err := res.Result()
			if err != nil {
				return Cart{}, fmt.Errorf("read cart %q: %w", id, err)
			}
			if len(h) == 0 {
				return Cart{}, fmt.Errorf("%w: %s", query.ErrNotFound, key)
			}
			return cartOf(id, h)
		}
	})
}

// cartOf assembles a Cart from the fields of its hash.
func cartOf(id string, h map[string]string) (Cart, error) {
	c := Cart{CartID: id, CustomerID: h[FieldCustomerID], Status: cmp.Or(h[FieldStatus], CartOpen),
		OrderID: h[FieldOrderID], Items: []Line{}}
	bad := func(field, value string, err error) (Cart, error) {
		return Cart{}, fmt.Errorf("read cart %q: field %s = %q: %w", id, field, value, err)
	}
	var err error
	if s, ok := h[FieldVersion]; ok {
		if c.Version, err = strconv.ParseUint(s, 10, 64); err != nil {
			return bad(FieldVersion, s, err)
		}
	}
	type item struct {
		Line
		firstAdded uint64
	}
	var items []item
	for f, q := range h {
		pid, ok := strings.CutPrefix(f, PrefixQuantity)
		if !ok {
			continue
		}
		p, o := h[PrefixUnitPrice+pid], h[PrefixFirstAdded+pid]
		if p == "" || o == "" {
			// Only a quantity change of a product not in the cart, which
			// the decider never emits, leaves a quantity alone; the
			// decider's state has no such line either.
			continue
		}
		it := item{Line: Line{ProductID: pid}}
		if it.Quantity, err = strconv.Atoi(q); err != nil {
			return bad(f, q, err)
		}
		if it.UnitPriceCents, err = strconv.ParseInt(p, 10, 64); err != nil {
			return bad(PrefixUnitPrice+pid, p, err)
		}
		if it.firstAdded, err = strconv.ParseUint(o, 10, 64); err != nil {
			return bad(PrefixFirstAdded+pid, o, err)
		}
		items = append(items, it)
	}
	// Versions are unique within a stream; the product id only makes the
	// order total on a hand-edited hash.
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.firstAdded, b.firstAdded), strings.Compare(a.ProductID, b.ProductID))
	})
	for _, it := range items {
		c.Items = append(c.Items, it.Line)
		c.TotalCents += int64(it.Quantity) * it.UnitPriceCents
	}
	return c, nil
}

// ReadOrder returns order id from v, a view of projection Orders, read from
// rdb, and the position of the model it was read at: the order as placed,
// with its current status and reason. An unknown order gives an error
// matching query.ErrNotFound.
func ReadOrder(ctx context.Context, rdb redis.Cmdable, v *query.View, id string) (Order, eventstore.Position, error) {
	key := v.Key(PartOrder, id)
	return readAt(ctx, rdb, v, query.Partition{}, "order "+strconv.Quote(id), func(p redis.Pipeliner) func() (Order, error) {
		res := p.HGetAll(ctx, key)
		return func() (Order, error) { return orderOf(id, key, res) }
	})
}

// orderOf decodes the order of hash key from res.
func orderOf(id, key string, res *redis.MapStringStringCmd) (Order, error) {
	if err := res.Err(); err != nil {
		return Order{}, fmt.Errorf("read order %q: %w", id, err)
	}
	if len(res.Val()) == 0 {
		return Order{}, fmt.Errorf("%w: %s", query.ErrNotFound, key)
	}
	var h struct {
		Doc    string `redis:"doc"`
		Status string `redis:"status"`
		Reason string `redis:"reason"`
	}
	if err := res.Scan(&h); err != nil {
		return Order{}, fmt.Errorf("read order %q: %w", id, err)
	}
	if h.Doc == "" {
		// Settled but never placed: a log the model cannot explain, shown
		// as no order rather than half of one.
		return Order{}, fmt.Errorf("%w: order %q has a status but was never placed", query.ErrNotFound, id)
	}
	var o Order
	if err := json.Unmarshal([]byte(h.Doc), &o); err != nil {
		return Order{}, fmt.Errorf("read order %q: %w", id, err)
	}
	o.Status, o.Reason = cmp.Or(h.Status, o.Status), h.Reason
	if o.Items == nil {
		o.Items = []Line{}
	}
	return o, nil
}

// ReadCustomer returns customer id from v, a view of projection Customers,
// read from rdb in one MULTI/EXEC so that carts, orders and credit come from
// the same committed batch, and the position of the model it was read at. A
// customer with no cart, no order and no registration gives an error matching
// query.ErrNotFound.
func ReadCustomer(ctx context.Context, rdb redis.Cmdable, v *query.View, id string) (Customer, eventstore.Position, error) {
	return readAt(ctx, rdb, v, query.Partition{}, "customer "+strconv.Quote(id), func(p redis.Pipeliner) func() (Customer, error) {
		carts := p.ZRange(ctx, v.Key(PartCustomer, id, PartCarts), 0, -1)
		orders := p.ZRange(ctx, v.Key(PartCustomer, id, PartOrders), 0, -1)
		credit := p.HGetAll(ctx, v.Key(PartCustomer, id, PartCredit))
		return func() (Customer, error) { return customerOf(id, carts, orders, credit) }
	})
}

// customerOf assembles a Customer from its reads.
func customerOf(id string, carts, orders *redis.StringSliceCmd, credit *redis.MapStringStringCmd) (Customer, error) {
	for _, c := range []redis.Cmder{carts, orders, credit} {
		if err := c.Err(); err != nil {
			return Customer{}, fmt.Errorf("read customer %q: %w", id, err)
		}
	}
	var err error
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
// carts, most first, and the position of the model it was read at; products
// with equal units come in descending product id order (Redis' order for
// equal scores read in reverse). limit < 1 gives none.
func TopProducts(ctx context.Context, rdb redis.Cmdable, v *query.View, limit int) ([]ProductUnits, eventstore.Position, error) {
	return readAt(ctx, rdb, v, query.Partition{}, "top products", func(p redis.Pipeliner) func() ([]ProductUnits, error) {
		var res *redis.ZSliceCmd
		if limit >= 1 {
			res = p.ZRevRangeWithScores(ctx, v.Key(PartUnits), 0, int64(limit-1))
		}
		return func() ([]ProductUnits, error) {
			out := []ProductUnits{}
			if res == nil {
				return out, nil
			}
			zs, err := res.Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("read top products: %w", err)
			}
			for _, z := range zs {
				id, _ := z.Member.(string)
				out = append(out, ProductUnits{ProductID: id, Units: int64(z.Score)})
			}
			return out, nil
		}
	})
}
