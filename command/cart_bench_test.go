package command_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/cputime"
)

// The shape of the shopping-cart workload: carts that are opened, get
// five items and are checked out, each command a load-fold-decide-append with
// optimistic concurrency. The cart's state holds a map that Evolve updates in
// place, as domain code often does, so that the state cache is exercised with
// a state that must never be seen half-applied.

type cartCommand interface{ isCartCommand() }

type (
	openCart    struct{}
	addCartItem struct {
		SKU string
		Qty int
	}
	checkoutCart struct{}
)

func (openCart) isCartCommand()     {}
func (addCartItem) isCartCommand()  {}
func (checkoutCart) isCartCommand() {}

type cartEvent interface{ isCartEvent() }

type (
	cartOpened    struct{}
	cartItemAdded struct {
		SKU string
		Qty int
	}
	cartCheckedOut struct{ Items int }
)

func (cartOpened) isCartEvent()     {}
func (cartItemAdded) isCartEvent()  {}
func (cartCheckedOut) isCartEvent() {}

type cart struct {
	open, checkedOut bool
	items            map[string]int
}

var (
	errCartClosed  = errors.New("cart is not open")
	errCartIsEmpty = errors.New("cart is empty")
)

var cartDecider = command.Decider[*cart, cartCommand, cartEvent]{
	Initial: func() *cart { return &cart{items: map[string]int{}} },
	Decide: func(s *cart, c cartCommand) ([]cartEvent, error) {
		switch c := c.(type) {
		case openCart:
			if s.open || s.checkedOut {
				return nil, nil // opening again changes nothing
			}
			return []cartEvent{cartOpened{}}, nil
		case addCartItem:
			if !s.open || s.checkedOut {
				return nil, errCartClosed
			}
			return []cartEvent{cartItemAdded(c)}, nil
		case checkoutCart:
			switch {
			case !s.open || s.checkedOut:
				return nil, errCartClosed
			case len(s.items) == 0:
				return nil, errCartIsEmpty
			}
			return []cartEvent{cartCheckedOut{Items: len(s.items)}}, nil
		}
		return nil, fmt.Errorf("unknown cart command %T", c)
	},
	Evolve: func(s *cart, e cartEvent) *cart {
		switch e := e.(type) {
		case cartOpened:
			s.open = true
		case cartItemAdded:
			s.items[e.SKU] += e.Qty // in place
		case cartCheckedOut:
			s.checkedOut = true
		}
		return s
	},
}

func cartRegistry() *eventstore.Registry {
	r := eventstore.NewRegistry()
	eventstore.Register[cartOpened](r, "cart.opened")
	eventstore.Register[cartItemAdded](r, "cart.item_added")
	eventstore.Register[cartCheckedOut](r, "cart.checked_out")
	return r
}

// cartScript is the commands of one cart, in order.
var cartScript = []cartCommand{
	openCart{},
	addCartItem{SKU: "tea-1", Qty: 1}, addCartItem{SKU: "tea-2", Qty: 2}, addCartItem{SKU: "mug-1", Qty: 1},
	addCartItem{SKU: "tea-1", Qty: 3}, addCartItem{SKU: "pot-1", Qty: 1},
	checkoutCart{},
}

// BenchmarkHandleCarts runs the shopping-cart workload through a Handler on
// SQLite: 10,000 carts × (open, 5 add-item, checkout) = 70,000 commands; each
// caller takes the next cart and sends its seven commands in order. One
// iteration is the whole workload, so run it with -benchtime=1x (or any
// -benchtime: the first iteration already takes seconds). It reports
// commands/s and per-command p50/p99, with the state cache on (the default)
// and off, and checks the log afterwards: every command's event, once.
//
//	go test -run '^$' -bench HandleCarts -benchtime=1x ./command/
func BenchmarkHandleCarts(b *testing.B) {
	const carts = 10_000
	for _, callers := range []int{1, 64} {
		for _, noCache := range []bool{false, true} {
			b.Run(fmt.Sprintf("sqlite/callers=%d/cache=%v", callers, !noCache), func(b *testing.B) {
				var lat []time.Duration
				var elapsed time.Duration
				for b.Loop() {
					b.StopTimer()
					store := backends[1].open(b)
					h, err := command.NewHandler(store, cartRegistry(), cartDecider, command.Config{Name: "cart", NoCache: noCache})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					l, e := runCarts(b, h, carts, callers)
					lat, elapsed = append(lat, l...), elapsed+e
					b.StopTimer()
					head, err := store.Head(context.Background())
					if err != nil || head != eventstore.SeqPosition(carts*uint64(len(cartScript))) {
						b.Fatalf("head %v (%v), want %d events", head, err, carts*len(cartScript))
					}
					b.StartTimer()
				}
				reportLatency(b, elapsed, lat, "cmds/s")
			})
		}
	}
}

func runCarts(b *testing.B, h *command.Handler[*cart, cartCommand, cartEvent], carts, callers int) ([]time.Duration, time.Duration) {
	ctx := context.Background()
	var next atomic.Int64
	latencies := make([][]time.Duration, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range callers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, carts*len(cartScript)/callers+len(cartScript))
			defer func() { latencies[w] = lat }()
			for {
				c := int(next.Add(1)) - 1
				if c >= carts {
					return
				}
				id := fmt.Sprint(c)
				for _, cmd := range cartScript {
					t0 := time.Now()
					_, err := h.Handle(ctx, id, cmd)
					lat = append(lat, time.Since(t0))
					if err != nil {
						errs[w] = fmt.Errorf("cart %s, %T: %w", id, cmd, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return slices.Concat(latencies...), elapsed
}

// BenchmarkOpenCarts opens new carts on SQLite from 64 goroutines, through
// Handle (which reads each new, empty stream before deciding) and through
// HandleNew (which decides on the initial state and lets the append check
// that the stream is new). cpu-µs/op, the process's CPU time per command, is
// the figure to compare on a shared machine.
func BenchmarkOpenCarts(b *testing.B) {
	for _, viaNew := range []bool{false, true} {
		name := "handle"
		if viaNew {
			name = "handle_new"
		}
		b.Run(name, func(b *testing.B) {
			store := backends[1].open(b)
			h, err := command.NewHandler(store, cartRegistry(), cartDecider, command.Config{Name: "cart"})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(32)
			cpu := cputime.Process()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint(next.Add(1))
					var err error
					if viaNew {
						_, err = h.HandleNew(ctx, id, openCart{})
					} else {
						_, err = h.Handle(ctx, id, openCart{})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64((cputime.Process()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
