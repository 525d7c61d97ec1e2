package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/eventline/eventline/eventstore"
)

// The checker's view of the log. It decodes the events' JSON into its own
// types and folds them with its own rules, written from the documents
// (docs/sample-read-models.md, docs/saga.md), never through the sample's
// deciders or projections: a bug there cannot hide itself here.

// headerCommandID is the metadata header in which the command handler
// records a command's id (its Idempotency-Key) on every event it appends.
const headerCommandID = "eventline.command_id"

type line struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// wantCart, wantOrder and wantCustomer are the documents the query API must
// serve, as the checker folds them from the log.
type wantCart struct {
	CartID     string `json:"cart_id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	Items      []line `json:"items"`
	TotalCents int64  `json:"total_cents"`
	Version    uint64 `json:"version"`
	OrderID    string `json:"order_id,omitempty"`

	checkoutItems []line // of the current checkout
	reopenedFor   map[string]bool
	checkedOutFor map[string]bool
}

type wantOrder struct {
	OrderID    string    `json:"order_id"`
	CartID     string    `json:"cart_id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Items      []line    `json:"items"`
	TotalCents int64     `json:"total_cents"`
	PlacedAt   time.Time `json:"placed_at"`

	placed bool
}

type wantCustomer struct {
	CustomerID       string   `json:"customer_id"`
	Carts            []string `json:"carts"`
	Orders           []string `json:"orders"`
	Registered       bool     `json:"registered"`
	CreditLimitCents int64    `json:"credit_limit_cents"`
	ReservedCents    int64    `json:"reserved_cents"`

	reserved map[string]int64 // order id → cents reserved and not released
}

// world is the fold of the whole log.
type world struct {
	carts     map[string]*wantCart
	orders    map[string]*wantOrder
	customers map[string]*wantCustomer
	head      eventstore.Position
	events    int
	problems  []string // records the fold could not make sense of
}

func (w *world) customer(id string) *wantCustomer {
	c := w.customers[id]
	if c == nil {
		c = &wantCustomer{CustomerID: id, Carts: []string{}, Orders: []string{}, reserved: map[string]int64{}}
		w.customers[id] = c
	}
	return c
}

// fold folds records (in log order) into the read models they imply.
func fold(records []eventstore.Record) *world {
	w := &world{carts: map[string]*wantCart{}, orders: map[string]*wantOrder{}, customers: map[string]*wantCustomer{}}
	for _, r := range records {
		w.events++
		w.head = r.Position
		if err := w.apply(r); err != nil {
			w.problems = append(w.problems, fmt.Sprintf("%s %s v%d at %s: %v", r.Type, r.StreamID, r.Version, r.Position, err))
		}
	}
	return w
}

func (w *world) apply(r eventstore.Record) error {
	var d struct {
		CustomerID       string `json:"customer_id"`
		CartID           string `json:"cart_id"`
		ProductID        string `json:"product_id"`
		Quantity         int    `json:"quantity"`
		UnitPriceCents   int64  `json:"unit_price_cents"`
		OrderID          string `json:"order_id"`
		Items            []line `json:"items"`
		TotalCents       int64  `json:"total_cents"`
		Reason           string `json:"reason"`
		CreditLimitCents int64  `json:"credit_limit_cents"`
		AmountCents      int64  `json:"amount_cents"`
	}
	if len(r.Data) > 0 {
		if err := json.Unmarshal(r.Data, &d); err != nil {
			return err
		}
	}
	kind, id, _ := strings.Cut(r.StreamID, "-")
	switch kind {
	case "cart":
		c := w.carts[id]
		if c == nil {
			if r.Type != "cart.opened" {
				return fmt.Errorf("first event of the cart is not cart.opened")
			}
			c = &wantCart{CartID: id, Items: []line{}, reopenedFor: map[string]bool{}, checkedOutFor: map[string]bool{}}
			w.carts[id] = c
		}
		if r.Version != c.Version+1 {
			return fmt.Errorf("stream version %d after %d", r.Version, c.Version)
		}
		c.Version = r.Version
		idx := slices.IndexFunc(c.Items, func(l line) bool { return l.ProductID == d.ProductID })
		switch r.Type {
		case "cart.opened":
			c.CustomerID, c.Status = d.CustomerID, "open"
			cu := w.customer(d.CustomerID)
			cu.Carts = append(cu.Carts, id)
		case "cart.item_added":
			if idx >= 0 {
				c.Items[idx].Quantity += d.Quantity
			} else {
				c.Items = append(c.Items, line{d.ProductID, d.Quantity, d.UnitPriceCents})
			}
		case "cart.quantity_changed":
			if idx < 0 {
				return fmt.Errorf("quantity of product %q not in the cart", d.ProductID)
			}
			c.Items[idx].Quantity = d.Quantity
		case "cart.item_removed":
			if idx < 0 {
				return fmt.Errorf("removal of product %q not in the cart", d.ProductID)
			}
			c.Items = slices.Delete(c.Items, idx, idx+1)
		case "cart.checked_out":
			c.Status, c.OrderID, c.checkoutItems = "checked_out", d.OrderID, d.Items
			c.checkedOutFor[d.OrderID] = true
			o := w.order(d.OrderID)
			if o.CartID == "" {
				o.CartID, o.CustomerID, o.Items, o.TotalCents, o.PlacedAt = id, d.CustomerID, d.Items, d.TotalCents, r.RecordedAt
			}
			cu := w.customer(d.CustomerID)
			cu.Orders = append(cu.Orders, d.OrderID)
		case "cart.reopened":
			c.Status, c.OrderID, c.checkoutItems = "open", "", nil
			c.reopenedFor[d.OrderID] = true
		default:
			return fmt.Errorf("unknown cart event")
		}
		c.TotalCents = 0
		for _, l := range c.Items {
			c.TotalCents += int64(l.Quantity) * l.UnitPriceCents
		}
	case "order":
		o := w.order(id)
		switch r.Type {
		case "order.placed":
			o.placed = true
			if o.CartID == "" {
				o.CartID, o.CustomerID, o.Items, o.TotalCents, o.PlacedAt = d.CartID, d.CustomerID, d.Items, d.TotalCents, r.RecordedAt
			}
		case "order.confirmed":
			o.Status = "confirmed"
		case "order.rejected":
			o.Status, o.Reason = "rejected", d.Reason
		default:
			return fmt.Errorf("unknown order event")
		}
	case "customer":
		cu := w.customer(id)
		switch r.Type {
		case "customer.registered":
			cu.Registered, cu.CreditLimitCents = true, d.CreditLimitCents
		case "customer.credit_reserved":
			cu.reserved[d.OrderID] += d.AmountCents
			cu.ReservedCents += d.AmountCents
		case "customer.credit_released":
			cu.reserved[d.OrderID] -= d.AmountCents
			cu.ReservedCents -= d.AmountCents
		case "customer.credit_refused":
		default:
			return fmt.Errorf("unknown customer event")
		}
	}
	return nil
}

func (w *world) order(id string) *wantOrder {
	o := w.orders[id]
	if o == nil {
		o = &wantOrder{OrderID: id, Status: "pending", Items: []line{}}
		w.orders[id] = o
	}
	return o
}

// units is the products leaderboard the log implies: the units of the
// carts that are checked out.
func (w *world) units() map[string]int {
	u := map[string]int{}
	for _, c := range w.carts {
		if c.Status == "checked_out" {
			for _, l := range c.checkoutItems {
				u[l.ProductID] += l.Quantity
			}
		}
	}
	for p, n := range u {
		if n == 0 {
			delete(u, p)
		}
	}
	return u
}

// checkExactlyOnce checks the commands against the log: every command
// acknowledged with a 2xx that said it wrote events is in the log exactly
// once, at the position it was acknowledged with; one that wrote nothing,
// or was refused, is not in it; one left without an answer is in it at most
// once. Every command id in the log, the saga's included, was appended once:
// a repeated append repeats the command's event types.
func checkExactlyOnce(records []eventstore.Record, ops []op) []string {
	type run struct {
		stream string
		pos    []string
		types  map[string]int
	}
	byKey := map[string]*run{}
	var out []string
	for _, r := range records {
		k := r.Metadata.Headers[headerCommandID]
		if k == "" {
			continue
		}
		e := byKey[k]
		if e == nil {
			e = &run{stream: r.StreamID, types: map[string]int{}}
			byKey[k] = e
		}
		if e.stream != r.StreamID {
			out = append(out, fmt.Sprintf("command %s wrote to two streams, %s and %s", k, e.stream, r.StreamID))
		}
		e.pos = append(e.pos, r.Position.String())
		e.types[r.Type]++
	}
	for k, e := range byKey {
		for typ, n := range e.types {
			if n > 1 {
				out = append(out, fmt.Sprintf("command %s is in the log %d times (%d × %s in %s at %v)", k, n, n, typ, e.stream, e.pos))
			}
		}
	}
	for _, o := range ops {
		e := byKey[o.Key]
		n := 0
		if e != nil {
			n = len(e.pos)
		}
		switch {
		case o.Outcome == outcomeAcked && o.Recorded:
			if n == 0 {
				out = append(out, fmt.Sprintf("acknowledged command %s (%s %s, position %s) is not in the log", o.Key, o.Kind, o.Path, o.Position))
			} else if !slices.Contains(e.pos, o.Position) {
				out = append(out, fmt.Sprintf("acknowledged command %s (%s %s) answered position %s, the log has it at %v", o.Key, o.Kind, o.Path, o.Position, e.pos))
			}
		case o.Outcome == outcomeAcked || o.Outcome == outcomeRefused:
			if n > 0 {
				out = append(out, fmt.Sprintf("command %s (%s %s) answered %d without writing, yet the log has it at %v", o.Key, o.Kind, o.Path, o.Status, e.pos))
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkOrders checks the saga's outcome: every order reached a final state,
// and its cart and the customer's credit agree with it.
func checkOrders(w *world) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(w.orders)) {
		o := w.orders[id]
		c := w.carts[o.CartID]
		if c == nil {
			out = append(out, fmt.Sprintf("order %s: no cart %q", id, o.CartID))
			continue
		}
		cu := w.customer(o.CustomerID)
		switch o.Status {
		case "pending":
			out = append(out, fmt.Sprintf("order %s (cart %s) is still pending", id, o.CartID))
		case "confirmed":
			if !o.placed {
				out = append(out, fmt.Sprintf("order %s confirmed but never placed", id))
			}
			if c.reopenedFor[id] || c.OrderID != id || c.Status != "checked_out" {
				out = append(out, fmt.Sprintf("order %s confirmed, but cart %s is %s for order %q", id, o.CartID, c.Status, c.OrderID))
			}
			if cu.reserved[id] != o.TotalCents {
				out = append(out, fmt.Sprintf("order %s confirmed for %d cents, customer %s has %d reserved for it", id, o.TotalCents, o.CustomerID, cu.reserved[id]))
			}
		case "rejected":
			if !c.reopenedFor[id] {
				out = append(out, fmt.Sprintf("order %s rejected, but cart %s was never reopened for it", id, o.CartID))
			}
			if cu.reserved[id] != 0 {
				out = append(out, fmt.Sprintf("order %s rejected, customer %s still has %d cents reserved for it", id, o.CustomerID, cu.reserved[id]))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(w.customers)) {
		cu := w.customers[id]
		if cu.ReservedCents > cu.CreditLimitCents {
			out = append(out, fmt.Sprintf("customer %s has %d cents reserved over a limit of %d", id, cu.ReservedCents, cu.CreditLimitCents))
		}
		for oid, n := range cu.reserved {
			if n < 0 || (n > 0 && w.orders[oid] == nil) {
				out = append(out, fmt.Sprintf("customer %s has %d cents reserved for order %q", id, n, oid))
			}
		}
	}
	return out
}

// compareJSON compares a served document with the wanted one, field by
// field of the wanted document's JSON.
func compareJSON(what string, got []byte, want any) []string {
	wb, _ := json.Marshal(want)
	var g, wv map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		return []string{fmt.Sprintf("%s: not a JSON object: %.200s", what, got)}
	}
	_ = json.Unmarshal(wb, &wv)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(wv)) {
		gb, _ := json.Marshal(g[k])
		wb, _ := json.Marshal(wv[k])
		if k == "placed_at" {
			if sameTime(g[k], wv[k]) {
				continue
			}
		}
		if string(gb) != string(wb) {
			out = append(out, fmt.Sprintf("%s: %s is %s, the log says %s", what, k, gb, wb))
		}
	}
	for k := range g {
		if _, ok := wv[k]; !ok {
			gb, _ := json.Marshal(g[k])
			out = append(out, fmt.Sprintf("%s: %s is %s, the log says nothing of it", what, k, gb))
		}
	}
	return out
}

// sameTime compares two RFC 3339 times to the microsecond, the precision
// every store keeps.
func sameTime(a, b any) bool {
	as, _ := a.(string)
	bs, _ := b.(string)
	at, err1 := time.Parse(time.RFC3339Nano, as)
	bt, err2 := time.Parse(time.RFC3339Nano, bs)
	return err1 == nil && err2 == nil && at.Truncate(time.Microsecond).Equal(bt.Truncate(time.Microsecond))
}

// commitTrace checks the announcements of landed batches: each is
// published from inside the batch's MULTI/EXEC, so it exists exactly when
// the batch landed, in the order batches landed. Within one build of one
// projection the announced checkpoints must strictly increase: a batch that
// landed without its lease — a paused runner's stale batch after another
// took over — repeats or goes back.
type commitTrace struct {
	last       map[string]eventstore.Position // "<projection> <build>" → last announced
	seen       int
	violations []string
}

func newCommitTrace() *commitTrace { return &commitTrace{last: map[string]eventstore.Position{}} }

// observe takes one message of channel "{el:<name>}:commits".
func (c *commitTrace) observe(channel, payload string) {
	name := strings.TrimSuffix(strings.TrimPrefix(channel, "{el:"), "}:commits")
	if strings.HasSuffix(payload, " switched") {
		return // a switch to a build, not a batch: it may repeat the last batch's position
	}
	build, tok, ok := strings.Cut(payload, " ")
	pos, err := eventstore.ParsePosition(tok)
	if !ok || err != nil {
		c.violations = append(c.violations, fmt.Sprintf("projection %s announced %q, not \"<build> <position>\"", name, payload))
		return
	}
	c.seen++
	k := name + " " + build
	if last, ok := c.last[k]; ok && !last.Before(pos) {
		c.violations = append(c.violations, fmt.Sprintf("projection %s build %s: a batch landed at %s after one at %s (without its lease?)", name, build, pos, last))
	}
	c.last[k] = pos
}

// reset forgets the trace: Redis was restarted empty, builds start over.
func (c *commitTrace) reset() { clear(c.last) }
