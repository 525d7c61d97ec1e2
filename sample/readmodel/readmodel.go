package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// Stream name prefixes of the sample's entities: the command handlers and
// the saga name their streams "<kind>-<id>", and events that do not repeat
// their entity's id (most of them) are attributed through it.
const (
	CartStreamPrefix     = "cart-"
	OrderStreamPrefix    = "order-"
	CustomerStreamPrefix = "customer-"
)

// ErrUnexpectedStream means an event arrived in a stream whose name does not
// say which entity it belongs to. The runner retries the record and then
// applies its poison policy.
var ErrUnexpectedStream = errors.New("readmodel: event in an unexpected stream")

// Projections returns the sample's read models, in the order carts,
// customers, products, orders, decoding events with reg, in which the cart,
// order and customer events must be registered.
// They decode each record once for the four (projection.SharedDecoding):
// their runners, in one process, apply the same records at about the same
// time, and no handler here modifies an event.
func Projections(reg *eventstore.Registry) []projection.Projection {
	return ProjectionsWith(reg, Options{})
}

// Options are the choices of the sample's read models that a deployment
// makes. The zero Options are the default.
type Options struct {
	// CartsPartitions splits the carts model into that many partitions
	// (projection.Partitioned), by cart id (CartPartitionKey), each with its
	// own hash tag, so that on a Redis Cluster the carts spread over the
	// masters and the projectors share their writing. 0 or 1: one partition,
	// the unpartitioned layout. Each count is a version of its own
	// (schema.CartsVersionFor).
	CartsPartitions int
}

// MaxCartsPartitions bounds Options.CartsPartitions.
const MaxCartsPartitions = projection.MaxPartitions

// ProjectionsWith returns the sample's read models as Projections does, with
// the choices in o.
func ProjectionsWith(reg *eventstore.Registry, o Options) []projection.Projection {
	d := projection.NewSharedDecoding(reg)
	return []projection.Projection{
		partitionedCarts(carts(projection.NewSharedRouter(d), o.CartsPartitions), o.CartsPartitions),
		customers(projection.NewSharedRouter(d)),
		products(projection.NewSharedRouter(d)),
		orders(projection.NewSharedRouter(d)),
	}
}

// entityID returns the id of the entity whose stream rec is in.
func entityID(rec eventstore.Record, prefix string) (string, error) {
	id, ok := strings.CutPrefix(rec.StreamID, prefix)
	if !ok || id == "" {
		return "", fmt.Errorf("%w: %s at position %s in stream %q, want %q<id>",
			ErrUnexpectedStream, rec.Type, rec.Position, rec.StreamID, prefix)
	}
	return id, nil
}

// CartsProjection is the cart detail model: one hash per cart (fields in
// package schema), changed field by field, so that no event needs to read the
// cart first. The reader assembles the items and the total.
func CartsProjection(reg *eventstore.Registry) projection.Projection {
	return carts(projection.NewRouter(reg), 1)
}

// PartitionedCartsProjection is CartsProjection split into n partitions by
// cart id (see Options.CartsPartitions); n < 2 is CartsProjection.
func PartitionedCartsProjection(reg *eventstore.Registry, n int) projection.Projection {
	return partitionedCarts(carts(projection.NewRouter(reg), n), n)
}

// CartPartitionKey is the partition key of the carts model: the cart id of a
// record of a cart's stream, so that all of a cart's events, and its hash,
// are in one partition, and a reader finds the cart's partition from its id
// (query.View.KeyFor(id, ...)). Records of other streams, which the model
// ignores, keep their stream id.
func CartPartitionKey(rec eventstore.Record) string {
	if id, ok := strings.CutPrefix(rec.StreamID, CartStreamPrefix); ok && id != "" {
		return id
	}
	return rec.StreamID
}

func partitionedCarts(p projection.Projection, n int) projection.Projection {
	if n < 2 {
		return p
	}
	return projection.Partitioned(p, n, CartPartitionKey)
}

// carts returns the carts model, at the version of its n partitions.
func carts(r *projection.Router, n int) projection.Projection {
	// update writes the record's changes to the cart's hash: the fields and
	// the stream version the hash then reflects, then the others that change
	// adds. The Tx helpers merge a batch's writes to one cart.
	update := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, fields []any, change func(key string) error) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		key := tx.Key(schema.PartCart, id)
		if err := tx.HSet(ctx, key, append([]any{schema.FieldVersion, rec.Version}, fields...)...); err != nil {
			return err
		}
		if change != nil {
			return change(key)
		}
		return nil
	}
	// A cart's stream starts with cart.opened, so nothing of the cart is in
	// the model yet: Del says so, and lets the helpers turn the cart's later
	// HINCRBY and HSETNX of the same batch into plain values of one HSET.
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Opened) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		key := tx.Key(schema.PartCart, id)
		tx.Del(ctx, key)
		return tx.HSet(ctx, key, schema.FieldVersion, rec.Version, schema.FieldCustomerID, e.CustomerID, schema.FieldStatus, schema.CartOpen)
	})
	// An addition of a product already in the cart adds to its quantity and
	// keeps its price and place, as cart.Evolve does; HSETNX keeps them.
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.ItemAdded) error {
		return update(ctx, tx, rec, nil, func(key string) error {
			tx.HIncrBy(ctx, key, schema.PrefixQuantity+e.ProductID, int64(e.Quantity))
			if err := tx.HSetNX(ctx, key, schema.PrefixUnitPrice+e.ProductID, e.UnitPriceCents); err != nil {
				return err
			}
			return tx.HSetNX(ctx, key, schema.PrefixFirstAdded+e.ProductID, rec.Version)
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.QuantityChanged) error {
		return update(ctx, tx, rec, []any{schema.PrefixQuantity + e.ProductID, e.Quantity}, nil)
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.ItemRemoved) error {
		return update(ctx, tx, rec, nil, func(key string) error {
			tx.HDel(ctx, key, schema.PrefixQuantity+e.ProductID, schema.PrefixUnitPrice+e.ProductID,
				schema.PrefixFirstAdded+e.ProductID)
			return nil
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		return update(ctx, tx, rec, []any{schema.FieldStatus, schema.CartCheckedOut, schema.FieldOrderID, e.OrderID}, nil)
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Reopened) error {
		return update(ctx, tx, rec, []any{schema.FieldStatus, schema.CartOpen}, func(key string) error {
			tx.HDel(ctx, key, schema.FieldOrderID)
			return nil
		})
	})
	return r.Projection(schema.Carts, schema.CartsVersionFor(n))
}

// CustomersProjection is a customer's carts and orders (sorted sets scored
// by the commit position of the event that created each) and credit (a hash
// updated with HSET and HINCRBY). None of it needs a read.
func CustomersProjection(reg *eventstore.Registry) projection.Projection {
	return customers(projection.NewRouter(reg))
}

func customers(r *projection.Router) projection.Projection {
	score := func(rec eventstore.Record) float64 { return float64(rec.Position.Commit) }
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Opened) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		tx.ZAddNX(ctx, tx.Key(schema.PartCustomer, e.CustomerID, schema.PartCarts), score(rec), id)
		return nil
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		tx.ZAddNX(ctx, tx.Key(schema.PartCustomer, e.CustomerID, schema.PartOrders), score(rec), e.OrderID)
		return nil
	})
	credit := func(rec eventstore.Record, tx *projection.Tx) (string, error) {
		id, err := entityID(rec, CustomerStreamPrefix)
		return tx.Key(schema.PartCustomer, id, schema.PartCredit), err
	}
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e customer.Registered) error {
		key, err := credit(rec, tx)
		if err != nil {
			return err
		}
		tx.HIncrBy(ctx, key, schema.FieldReserved, 0)
		return tx.HSet(ctx, key, schema.FieldCreditLimit, e.CreditLimitCents)
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e customer.CreditReserved) error {
		key, err := credit(rec, tx)
		if err != nil {
			return err
		}
		tx.HIncrBy(ctx, key, schema.FieldReserved, e.AmountCents)
		return nil
	})
	// The decider emits CreditReleased only for a reservation in force, with
	// its amount, so subtracting the event's amount matches its state.
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e customer.CreditReleased) error {
		key, err := credit(rec, tx)
		if err != nil {
			return err
		}
		tx.HIncrBy(ctx, key, schema.FieldReserved, -e.AmountCents)
		return nil
	})
	return r.Projection(schema.Customers, schema.CustomersVersion)
}

// returnUnits takes a reopened cart's checkout back off the leaderboard,
// inside the batch's MULTI/EXEC, so that it sees the batch's earlier writes
// (the checkout may be in the same batch) without a read from the runner.
// KEYS[1] is the leaderboard, KEYS[2] the checkout's hash product id → units.
// A product whose every unit came back leaves the board. Redis does not roll
// back EXEC when a script fails, so the script must not fail on any data a
// well-formed log leaves: a missing hash is an empty one, a value that is not
// a number is skipped, and it calls only commands that accept these types.
const returnUnits = `
local lines = redis.call('HGETALL', KEYS[2])
for i = 1, #lines, 2 do
	local n = tonumber(lines[i + 1])
	if n then
		redis.call('ZINCRBY', KEYS[1], -n, lines[i])
	end
end
if #lines > 0 then
	redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '0')
	redis.call('DEL', KEYS[2])
end
return #lines / 2
`

// ProductsProjection is the leaderboard: units of each product in carts that
// are checked out. A checkout adds its lines' units (ZINCRBY) and keeps them
// under the cart id; the reopening of the cart after its order was rejected
// subtracts them again (returnUnits), so rejected orders do not count.
func ProductsProjection(reg *eventstore.Registry) projection.Projection {
	return products(projection.NewRouter(reg))
}

func products(r *projection.Router) projection.Projection {
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		if len(e.Items) == 0 {
			// The decider refuses an empty checkout; HSET without fields
			// would fail inside EXEC.
			return nil
		}
		units, checkout := tx.Key(schema.PartUnits), tx.Key(schema.PartCheckout, id)
		lines := make([]any, 0, 2*len(e.Items))
		for _, l := range e.Items {
			tx.ZIncrBy(ctx, units, float64(l.Quantity), l.ProductID)
			lines = append(lines, l.ProductID, l.Quantity)
		}
		// A cart has one checkout at a time: whatever a previous one left
		// (none after a reopen) is replaced.
		tx.Del(ctx, checkout)
		return tx.HSet(ctx, checkout, lines...)
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Reopened) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		// EVAL rather than EVALSHA: inside MULTI a NOSCRIPT (script cache
		// flushed, Redis restarted) would surface only at EXEC, after the
		// rest of the batch landed. Redis caches the compiled script anyway.
		// Pipe queues the helpers' pending writes first, so the script
		// sees the batch's earlier checkouts.
		tx.Pipe().Eval(ctx, returnUnits, []string{tx.Key(schema.PartUnits), tx.Key(schema.PartCheckout, id)})
		return nil
	})
	return r.Projection(schema.Products, schema.ProductsVersion)
}

// OrdersProjection is the order detail model: one hash per order, created
// pending by the cart's checkout (before the saga places it) or by
// order.placed, whichever comes first, then settled by the order's own
// events. Every write is blind: HSETNX where a later event must not
// overwrite an earlier one, HSET otherwise.
func OrdersProjection(reg *eventstore.Registry) projection.Projection {
	return orders(projection.NewRouter(reg))
}

func orders(r *projection.Router) projection.Projection {
	// place creates the order unless an earlier event already did: the
	// checkout and order.placed describe the same order.
	place := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, o schema.Order) error {
		o.Status = schema.OrderPending
		o.PlacedAt = rec.RecordedAt.UTC()
		if o.Items == nil {
			o.Items = []schema.Line{}
		}
		doc, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("readmodel: encode order %q: %w", o.OrderID, err)
		}
		key := tx.Key(schema.PartOrder, o.OrderID)
		if err := tx.HSetNX(ctx, key, schema.FieldOrderDoc, doc); err != nil {
			return err
		}
		return tx.HSetNX(ctx, key, schema.FieldStatus, schema.OrderPending)
	}
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		cartID, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		items := make([]schema.Line, len(e.Items))
		for i, l := range e.Items {
			items[i] = schema.Line(l)
		}
		return place(ctx, tx, rec, schema.Order{OrderID: e.OrderID, CartID: cartID, CustomerID: e.CustomerID,
			Items: items, TotalCents: e.TotalCents})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Placed) error {
		items := make([]schema.Line, len(e.Items))
		for i, l := range e.Items {
			items[i] = schema.Line(l)
		}
		return place(ctx, tx, rec, schema.Order{OrderID: e.OrderID, CartID: e.CartID, CustomerID: e.CustomerID,
			Items: items, TotalCents: e.TotalCents})
	})
	// order.placed always comes first in the order's stream, so a settlement
	// finds the order placed; the reader shows a settled order without a
	// document as not found.
	settle := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, status, reason string) error {
		id, err := entityID(rec, OrderStreamPrefix)
		if err != nil {
			return err
		}
		key := tx.Key(schema.PartOrder, id)
		if reason == "" {
			tx.HDel(ctx, key, schema.FieldReason)
			return tx.HSet(ctx, key, schema.FieldStatus, status)
		}
		return tx.HSet(ctx, key, schema.FieldStatus, status, schema.FieldReason, reason)
	}
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Confirmed) error {
		return settle(ctx, tx, rec, schema.OrderConfirmed, "")
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Rejected) error {
		return settle(ctx, tx, rec, schema.OrderRejected, e.Reason)
	})
	return r.Projection(schema.Orders, schema.OrdersVersion)
}
