package command_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventline/eventline/command"
)

// HandleNew decides a new entity's first command without reading its stream,
// and the entry it caches lets the next command skip the read too.
func TestHandleNewReadsNothingForANewStream(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			store := &readCounter{Store: be.open(t)}
			h := mustHandler(t, store, command.Config{})
			res, err := h.HandleNew(ctx, "1", openWithDeposit{Owner: "ann", Amount: 5})
			if err != nil {
				t.Fatal(err)
			}
			if froms, _ := store.reset(); len(froms) != 0 || res.Version != 2 || len(res.Events) != 2 {
				t.Fatalf("read from %v, result %+v; want no read and version 2", froms, res)
			}
			if _, err := h.Handle(ctx, "1", withdraw{Amount: 5}); err != nil {
				t.Fatal(err)
			}
			if froms, _ := store.reset(); len(froms) != 0 {
				t.Fatalf("second command read from %v; want no read", froms)
			}
			if got := accountDecider.Fold(decodeAll(t, store.Store, "account-1")...); got != (account{Open: true, Owner: "ann"}) {
				t.Fatalf("state %+v", got)
			}
		})
	}
}

// On a stream that exists after all, HandleNew answers what Handle answers:
// the store refuses the guessed append, and the command is decided again on
// the stream as read, at once, without counting a conflict.
func TestHandleNewOnAnExistingStreamIsHandle(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			store := &readCounter{Store: be.open(t)}
			reg := prometheus.NewRegistry()
			// No cache: HandleNew never knows the stream exists.
			h := mustHandler(t, store, command.Config{NoCache: true, Registerer: reg})
			if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
				t.Fatal(err)
			}
			// Decided on the initial state, the open yields an event; the
			// append expecting no stream is refused, and the command, read
			// again, is refused by the decider as Handle refuses it.
			_, err := h.HandleNew(ctx, "1", openAccount{Owner: "bob"})
			if !errors.Is(err, errAlreadyOpen) {
				t.Fatalf("open of an open account: %v, want errAlreadyOpen", err)
			}
			// A deposit on the initial state is refused: not trusted, it is
			// decided again on the stream and accepted.
			store.reset()
			res, err := h.HandleNew(ctx, "1", deposit{Amount: 3})
			if err != nil || res.Version != 2 {
				t.Fatalf("deposit: %+v, %v", res, err)
			}
			if froms, _ := store.reset(); !reflect.DeepEqual(froms, []uint64{1}) {
				t.Fatalf("deposit read from %v, want one read from 1", froms)
			}
			expect := `
# HELP eventline_command_conflicts_total Appends refused because another writer moved the stream first.
# TYPE eventline_command_conflicts_total counter
eventline_command_conflicts_total{entity="account"} 0
`
			if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "eventline_command_conflicts_total"); err != nil {
				t.Fatal(err)
			}
			if got := accountDecider.Fold(decodeAll(t, store.Store, "account-1")...); got != (account{Open: true, Owner: "ann", Balance: 3}) {
				t.Fatalf("state %+v", got)
			}
		})
	}
}

// A retried HandleNew with a command id is recognised as a repeat although
// its first attempt does not read the stream.
func TestHandleNewRepeatIsAnsweredAsBefore(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := command.WithID(context.Background(), "open-1")
			store := be.open(t)
			first, err := mustHandler(t, store, command.Config{}).HandleNew(ctx, "1", openWithDeposit{Owner: "ann", Amount: 5})
			if err != nil {
				t.Fatal(err)
			}
			// Another Handler (another process): nothing cached.
			again, err := mustHandler(t, store, command.Config{}).HandleNew(ctx, "1", openWithDeposit{Owner: "ann", Amount: 5})
			if err != nil {
				t.Fatal(err)
			}
			if again.Version != first.Version || again.Position != first.Position || !reflect.DeepEqual(again.Events, first.Events) {
				t.Fatalf("repeat answered %+v, first %+v", again, first)
			}
			if _, err := mustHandler(t, store, command.Config{}).HandleNew(ctx, "1", openWithDeposit{Owner: "ann", Amount: 6}); !errors.Is(err, command.ErrIdempotencyConflict) {
				t.Fatalf("same id, another command: %v, want ErrIdempotencyConflict", err)
			}
			if n := len(decodeAll(t, store, "account-1")); n != 2 {
				t.Fatalf("%d events, want 2", n)
			}
		})
	}
}
