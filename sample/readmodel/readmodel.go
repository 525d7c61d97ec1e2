package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/order"
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
func Projections(reg *eventstore.Registry) []projection.Projection {
	return []projection.Projection{
		CartsProjection(reg),
		CustomersProjection(reg),
		ProductsProjection(reg),
		OrdersProjection(reg),
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

// loadJSON returns the document under key as this batch left it: from the
// batch's memo when an earlier record of the batch wrote it, else from Redis.
// found is false when neither has it.
func loadJSON[T any](ctx context.Context, tx *projection.Tx, key string) (doc *T, found bool, err error) {
	if v, ok := tx.Memo(key); ok {
		d, _ := v.(*T)
		return d, d != nil, nil
	}
	b, err := tx.Read().Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	d := new(T)
	if err := json.Unmarshal(b, d); err != nil {
		return nil, false, fmt.Errorf("readmodel: decode %s: %w", key, err)
	}
	return d, true, nil
}

// storeJSON queues the document's new value and remembers it for the rest of
// the batch. The pointer is the batch's own: later records change it in
// place, and each queues its own SET, so the last one wins at EXEC.
func storeJSON[T any](ctx context.Context, tx *projection.Tx, key string, doc *T) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("readmodel: encode %s: %w", key, err)
	}
	tx.Pipe().Set(ctx, key, b, 0)
	tx.SetMemo(key, doc)
	return nil
}

// deleteKey queues the removal of key and remembers that it is gone.
func deleteKey[T any](ctx context.Context, tx *projection.Tx, key string) {
	tx.Pipe().Del(ctx, key)
	tx.SetMemo(key, (*T)(nil))
}

// CartsProjection is the cart detail model: one JSON schema.Cart per cart,
// rewritten by every event of the cart.
func CartsProjection(reg *eventstore.Registry) projection.Projection {
	r := projection.NewRouter(reg)
	// update reads the cart as the batch left it, changes it and queues it.
	update := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, change func(c *schema.Cart)) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		key := tx.Key(schema.PartCart, id)
		c, found, err := loadJSON[schema.Cart](ctx, tx, key)
		if err != nil {
			return err
		}
		if !found {
			c = &schema.Cart{CartID: id, Status: schema.CartOpen, Items: []schema.Line{}}
		}
		change(c)
		c.Version = rec.Version
		c.TotalCents = 0
		for _, l := range c.Items {
			c.TotalCents += int64(l.Quantity) * l.UnitPriceCents
		}
		return storeJSON(ctx, tx, key, c)
	}
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Opened) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			c.CustomerID = e.CustomerID
			c.Status = schema.CartOpen
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.ItemAdded) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			if i := lineOf(c.Items, e.ProductID); i >= 0 {
				c.Items[i].Quantity += e.Quantity
				return
			}
			c.Items = append(c.Items, schema.Line{ProductID: e.ProductID, Quantity: e.Quantity, UnitPriceCents: e.UnitPriceCents})
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.QuantityChanged) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			if i := lineOf(c.Items, e.ProductID); i >= 0 {
				c.Items[i].Quantity = e.Quantity
			}
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.ItemRemoved) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			if i := lineOf(c.Items, e.ProductID); i >= 0 {
				c.Items = slices.Delete(c.Items, i, i+1)
			}
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			c.Status = schema.CartCheckedOut
			c.OrderID = e.OrderID
		})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Reopened) error {
		return update(ctx, tx, rec, func(c *schema.Cart) {
			c.Status = schema.CartOpen
			c.OrderID = ""
		})
	})
	return projection.Define(schema.Carts, schema.Version, r.Apply, r.Types()...)
}

func lineOf(lines []schema.Line, productID string) int {
	return slices.IndexFunc(lines, func(l schema.Line) bool { return l.ProductID == productID })
}

// CustomersProjection is a customer's carts and orders (sorted sets scored
// by the commit position of the event that created each) and credit (a hash
// updated with HSET and HINCRBY). None of it needs a read.
func CustomersProjection(reg *eventstore.Registry) projection.Projection {
	r := projection.NewRouter(reg)
	score := func(rec eventstore.Record) float64 { return float64(rec.Position.Commit) }
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Opened) error {
		id, err := entityID(rec, CartStreamPrefix)
		if err != nil {
			return err
		}
		tx.Pipe().ZAddNX(ctx, tx.Key(schema.PartCustomer, e.CustomerID, schema.PartCarts), redis.Z{Score: score(rec), Member: id})
		return nil
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		tx.Pipe().ZAddNX(ctx, tx.Key(schema.PartCustomer, e.CustomerID, schema.PartOrders), redis.Z{Score: score(rec), Member: e.OrderID})
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
		tx.Pipe().HSet(ctx, key, schema.FieldCreditLimit, e.CreditLimitCents)
		tx.Pipe().HIncrBy(ctx, key, schema.FieldReserved, 0)
		return nil
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e customer.CreditReserved) error {
		key, err := credit(rec, tx)
		if err != nil {
			return err
		}
		tx.Pipe().HIncrBy(ctx, key, schema.FieldReserved, e.AmountCents)
		return nil
	})
	// The decider emits CreditReleased only for a reservation in force, with
	// its amount, so subtracting the event's amount matches its state.
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e customer.CreditReleased) error {
		key, err := credit(rec, tx)
		if err != nil {
			return err
		}
		tx.Pipe().HIncrBy(ctx, key, schema.FieldReserved, -e.AmountCents)
		return nil
	})
	return projection.Define(schema.Customers, schema.Version, r.Apply, r.Types()...)
}

// ProductsProjection is the leaderboard: units of each product in carts that
// are checked out. A checkout adds its lines' units (ZINCRBY) and keeps the
// lines under the order id; the reopening of the cart after its order was
// rejected subtracts them again, so rejected orders do not count.
func ProductsProjection(reg *eventstore.Registry) projection.Projection {
	r := projection.NewRouter(reg)
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.CheckedOut) error {
		lines := make([]schema.Line, len(e.Items))
		for i, l := range e.Items {
			lines[i] = schema.Line(l)
			tx.Pipe().ZIncrBy(ctx, tx.Key(schema.PartUnits), float64(l.Quantity), l.ProductID)
		}
		return storeJSON(ctx, tx, tx.Key(schema.PartOrder, e.OrderID), &lines)
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e cart.Reopened) error {
		key := tx.Key(schema.PartOrder, e.OrderID)
		lines, found, err := loadJSON[[]schema.Line](ctx, tx, key)
		if err != nil || !found {
			return err
		}
		units := tx.Key(schema.PartUnits)
		for _, l := range *lines {
			tx.Pipe().ZIncrBy(ctx, units, -float64(l.Quantity), l.ProductID)
		}
		// A product whose every unit came back leaves the board.
		tx.Pipe().ZRemRangeByScore(ctx, units, "-inf", "0")
		deleteKey[[]schema.Line](ctx, tx, key)
		return nil
	})
	return projection.Define(schema.Products, schema.Version, r.Apply, r.Types()...)
}

// OrdersProjection is the order detail model: one JSON schema.Order per
// order, pending from the cart's checkout (before the saga places it), then
// confirmed or rejected by the order's own events.
func OrdersProjection(reg *eventstore.Registry) projection.Projection {
	r := projection.NewRouter(reg)
	// place creates the order unless an earlier event already did: the
	// checkout and order.placed describe the same order.
	place := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, o schema.Order) error {
		key := tx.Key(schema.PartOrder, o.OrderID)
		_, found, err := loadJSON[schema.Order](ctx, tx, key)
		if err != nil || found {
			return err
		}
		o.Status = schema.OrderPending
		o.PlacedAt = rec.RecordedAt.UTC()
		return storeJSON(ctx, tx, key, &o)
	}
	lines := func(items []schema.Line) []schema.Line {
		if items == nil {
			return []schema.Line{}
		}
		return items
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
			Items: lines(items), TotalCents: e.TotalCents})
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Placed) error {
		items := make([]schema.Line, len(e.Items))
		for i, l := range e.Items {
			items[i] = schema.Line(l)
		}
		return place(ctx, tx, rec, schema.Order{OrderID: e.OrderID, CartID: e.CartID, CustomerID: e.CustomerID,
			Items: lines(items), TotalCents: e.TotalCents})
	})
	settle := func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, status, reason string) error {
		id, err := entityID(rec, OrderStreamPrefix)
		if err != nil {
			return err
		}
		key := tx.Key(schema.PartOrder, id)
		o, found, err := loadJSON[schema.Order](ctx, tx, key)
		if err != nil {
			return err
		}
		if !found {
			// order.placed always comes first in the order's stream; a
			// settlement without it is a log this model cannot explain.
			return fmt.Errorf("readmodel: %s at position %s for order %q that was never placed", rec.Type, rec.Position, id)
		}
		o.Status, o.Reason = status, reason
		return storeJSON(ctx, tx, key, o)
	}
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Confirmed) error {
		return settle(ctx, tx, rec, schema.OrderConfirmed, "")
	})
	projection.Handle(r, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record, e order.Rejected) error {
		return settle(ctx, tx, rec, schema.OrderRejected, e.Reason)
	})
	return projection.Define(schema.Orders, schema.Version, r.Apply, r.Types()...)
}
