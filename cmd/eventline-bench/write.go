package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
)

// storeAppends makes n appends of one event each through store, from writers
// goroutines; writer g owns the streams whose number is g modulo writers, so
// that its exact expected versions never race another writer's. Streams are
// named prefix-<k>, out of benchStreams.
func storeAppends(ctx context.Context, store eventstore.Store, prefix string, writers, n int) loopResult {
	return runClients(ctx, writers, func(ctx context.Context, g int, rec func(time.Duration, error)) {
		var own []string
		for k := g; k < benchStreams; k += writers {
			own = append(own, prefix+"-"+strconv.Itoa(k))
		}
		versions := make([]uint64, len(own))
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		count := n / writers
		if g < n%writers {
			count++
		}
		for range count {
			i := rng.IntN(len(own))
			t0 := time.Now()
			_, err := store.Append(ctx, own[i], eventstore.Exact(versions[i]),
				eventstore.Event{Type: "bench.appended", Data: benchData})
			rec(time.Since(t0), err)
			if err != nil {
				return
			}
			versions[i]++
		}
	})
}

// The shopping-cart workload: each cart is opened, gets five
// items and is checked out, seven commands in order. A cart's items are a
// function of its number, so that the read model can be checked against what
// the commands imply without remembering them.

const cartCommands = 7

// cartItem returns item k (0..4) of cart i.
func cartItem(i, k int) cart.AddItem {
	return cart.AddItem{
		ProductID:      "p-" + strconv.Itoa((i+k)%50),
		Quantity:       k + 1,
		UnitPriceCents: int64(100 + 25*k + i%10),
	}
}

// cartTotal is the total of cart i after its five items.
func cartTotal(i int) int64 {
	var t int64
	for k := range 5 {
		it := cartItem(i, k)
		t += int64(it.Quantity) * it.UnitPriceCents
	}
	return t
}

func customerOf(i int) string { return "cust-" + strconv.Itoa(i%97) }

// cartRun is one run of the workload: carts prefix-0 .. prefix-(n-1).
type cartRun struct {
	prefix string
	carts  int
	// done[i] is set when every command of cart i was accepted; position[i] is
	// the position its checkout returned, written only by the goroutine that
	// took cart i and read after drive returned.
	done     []atomic.Bool
	position []eventstore.Position
}

func newCartRun(prefix string, carts int) *cartRun {
	return &cartRun{prefix: prefix, carts: carts, done: make([]atomic.Bool, carts), position: make([]eventstore.Position, carts)}
}

func (r *cartRun) id(i int) string { return r.prefix + "-" + strconv.Itoa(i) }

// accepted counts the carts whose seven commands were all accepted.
func (r *cartRun) accepted() int {
	n := 0
	for i := range r.done {
		if r.done[i].Load() {
			n++
		}
	}
	return n
}

// drive runs the workload with callers goroutines; each takes the next cart
// and sends its commands in order through send, which returns the position
// the command committed. A failed command abandons its cart.
func (r *cartRun) drive(ctx context.Context, callers int, send func(ctx context.Context, i, step int) (eventstore.Position, error)) loopResult {
	var next atomic.Int64
	return runClients(ctx, callers, func(ctx context.Context, _ int, rec func(time.Duration, error)) {
		for {
			i := int(next.Add(1)) - 1
			if i >= r.carts || ctx.Err() != nil {
				return
			}
			ok := true
			for step := range cartCommands {
				t0 := time.Now()
				pos, err := send(ctx, i, step)
				rec(time.Since(t0), err)
				if err != nil {
					ok = false
					break
				}
				r.position[i] = pos
			}
			r.done[i].Store(ok)
		}
	})
}

// cartCommand returns command step of cart i as the domain sees it.
func cartCommand(i, step int) cart.Command {
	switch step {
	case 0:
		return cart.Open{CustomerID: customerOf(i)}
	case cartCommands - 1:
		return cart.CheckOut{OrderID: "order-" + strconv.Itoa(i)}
	default:
		return cartItem(i, step-1)
	}
}

// viaHandler sends the workload's commands through a command.Handler, as a
// library user would.
func (r *cartRun) viaHandler(h *command.Handler[cart.State, cart.Command, cart.Event]) func(ctx context.Context, i, step int) (eventstore.Position, error) {
	return func(ctx context.Context, i, step int) (eventstore.Position, error) {
		cmd := cartCommand(i, step)
		if c, ok := cmd.(cart.CheckOut); ok {
			c.OrderID = r.prefix + "-" + c.OrderID
			cmd = c
		}
		res, err := h.Handle(ctx, r.id(i), cmd)
		return res.Position, err
	}
}

// viaHTTP sends the workload's commands to the command API at base.
func (r *cartRun) viaHTTP(c *http.Client, base string) func(ctx context.Context, i, step int) (eventstore.Position, error) {
	return func(ctx context.Context, i, step int) (eventstore.Position, error) {
		id := r.id(i)
		var method, url, body string
		want := http.StatusOK
		switch step {
		case 0:
			method, url, want = http.MethodPost, base+"/carts", http.StatusCreated
			b, _ := json.Marshal(map[string]string{"customer_id": customerOf(i), "cart_id": id})
			body = string(b)
		case cartCommands - 1:
			method, url = http.MethodPost, base+"/carts/"+id+"/checkout"
		default:
			method, url = http.MethodPost, base+"/carts/"+id+"/items"
			b, _ := json.Marshal(cartItem(i, step-1))
			body = string(b)
		}
		resp, err := do(ctx, c, method, url, body, want)
		if err != nil {
			return eventstore.Position{}, err
		}
		var p struct {
			Position string `json:"position"`
		}
		if err := json.Unmarshal(resp, &p); err != nil {
			return eventstore.Position{}, fmt.Errorf("%s %s: %w", method, url, err)
		}
		return eventstore.ParsePosition(p.Position)
	}
}
