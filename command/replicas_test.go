package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/google/uuid"
)

// TestIdempotencyConflictAcrossReplicas is two replicas of a command API (two
// Handlers) on one store, one of them with a cached state that is behind. A
// command id reused with another command must be refused on every replica
// whatever its cache holds, a true repeat must answer what the store holds,
// and no replica may fold into its cache events that were never written.
func TestIdempotencyConflictAcrossReplicas(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { testIdempotencyConflictAcrossReplicas(t, be.open(t)) })
	}
}

func testIdempotencyConflictAcrossReplicas(t *testing.T, store eventstore.Store) {
	ctx := context.Background()
	a := mustHandler(t, store, command.Config{})
	b := mustHandler(t, store, command.Config{})
	// B opens the account: B has the stream cached at version 1.
	if _, err := b.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	k := command.WithID(ctx, "K")
	first, err := a.Handle(k, "1", deposit{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}

	// B's cache is behind: it decides "deposit 500" on version 1, and its
	// append carries the same event id as A's.
	res, err := b.Handle(k, "1", deposit{Amount: 500})
	if !errors.Is(err, command.ErrIdempotencyConflict) {
		t.Errorf("command id K reused for deposit 500 on replica B: result %+v, err %v; want ErrIdempotencyConflict", res, err)
	}
	// The same on A, whose cache knows K.
	if res, err := a.Handle(k, "1", deposit{Amount: 500}); !errors.Is(err, command.ErrIdempotencyConflict) {
		t.Errorf("command id K reused for deposit 500 on replica A: result %+v, err %v; want ErrIdempotencyConflict", res, err)
	}

	// B decides on what the store holds (balance 5), not on its own "deposit
	// 500" that was never written.
	res, err = b.Handle(ctx, "1", withdraw{Amount: 400})
	if !errors.Is(err, errInsufficientFunds) {
		t.Errorf("withdraw 400 on replica B: result %+v, err %v; want errInsufficientFunds (balance 5)", res, err)
	}
	if got := accountDecider.Fold(decodeAll(t, store, "account-1")...).Balance; got != 5 {
		t.Errorf("stored balance %d, want 5", got)
	}

	// A true repeat answers the stored result on both replicas.
	for name, h := range map[string]*command.Handler[account, accountCommand, accountEvent]{"A": a, "B": b} {
		again, err := h.Handle(k, "1", deposit{Amount: 5})
		if err != nil {
			t.Fatalf("repeat of K on replica %s: %v", name, err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Errorf("repeat of K on replica %s = %+v, want the stored result %+v", name, again, first)
		}
	}

	// A true repeat on a replica whose cache is behind: the store recognises
	// the append, and the answer and the cache are the store's.
	if _, err := b.Handle(ctx, "1", deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	k2 := command.WithID(ctx, "K2")
	first2, err := a.Handle(k2, "1", deposit{Amount: 7})
	if err != nil {
		t.Fatal(err)
	}
	again2, err := b.Handle(k2, "1", deposit{Amount: 7})
	if err != nil || !reflect.DeepEqual(again2, first2) {
		t.Errorf("repeat of K2 on replica B = %+v, %v; want the stored result %+v", again2, err, first2)
	}
	if _, err := b.Handle(ctx, "1", withdraw{Amount: 14}); !errors.Is(err, errInsufficientFunds) {
		t.Errorf("withdraw 14 on replica B: %v; want errInsufficientFunds (balance 13)", err)
	}
	if _, err := b.Handle(ctx, "1", withdraw{Amount: 13}); err != nil {
		t.Errorf("withdraw 13 on replica B: %v; the balance is 13", err)
	}
	if got := accountDecider.Fold(decodeAll(t, store, "account-1")...).Balance; got != 0 {
		t.Errorf("stored balance %d, want 0", got)
	}
	for _, h := range []*command.Handler[account, accountCommand, accountEvent]{a, b} {
		if _, err := h.Handle(ctx, "1", withdraw{Amount: 1}); !errors.Is(err, errInsufficientFunds) {
			t.Errorf("withdraw 1 from an empty account: %v; want errInsufficientFunds", err)
		}
	}
}

// A ticket decider draws a fresh number for every ticket, as deciders that
// generate ids or read the clock do: the same command decides different
// events each time.
type ticketState struct{ Last string }

type issueTicket struct{}

type ticketIssued struct{ Number string }

func ticketHandler(t *testing.T, store eventstore.Store) *command.Handler[ticketState, issueTicket, ticketIssued] {
	t.Helper()
	reg := eventstore.NewRegistry()
	eventstore.Register[ticketIssued](reg, "ticket.issued")
	h, err := command.NewHandler(store, reg, command.Decider[ticketState, issueTicket, ticketIssued]{
		Initial: func() ticketState { return ticketState{} },
		Decide: func(ticketState, issueTicket) ([]ticketIssued, error) {
			return []ticketIssued{{Number: uuid.NewString()}}, nil
		},
		Evolve: func(_ ticketState, e ticketIssued) ticketState { return ticketState{Last: e.Number} },
	}, command.Config{Name: "ticket"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRepeatAnswersStoredEventsAcrossReplicas: a replica whose cache is
// behind repeats a command id that another replica handled. Its own decision
// differs from the stored one (a fresh number), the command is the same: the
// answer is the stored events, and its cache holds them, not its own.
func TestRepeatAnswersStoredEventsAcrossReplicas(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			store := be.open(t)
			ctx := context.Background()
			a, b := ticketHandler(t, store), ticketHandler(t, store)
			if _, err := b.Handle(ctx, "q", issueTicket{}); err != nil {
				t.Fatal(err)
			}
			k := command.WithID(ctx, "K")
			first, err := a.Handle(k, "q", issueTicket{})
			if err != nil {
				t.Fatal(err)
			}
			again, err := b.Handle(k, "q", issueTicket{})
			if err != nil || !reflect.DeepEqual(again, first) {
				t.Fatalf("repeat on the replica that is behind = %+v, %v; want the stored result %+v", again, err, first)
			}
			// B's next command decides on the stored state: its event follows
			// version 2, and B's cache is what a reload gives.
			next, err := b.Handle(ctx, "q", issueTicket{})
			if err != nil || next.Version != 3 {
				t.Fatalf("next command on B = %+v, %v; want version 3", next, err)
			}
			recs := readAll(t, store, "ticket-q")
			var stored ticketIssued
			if err := json.Unmarshal(recs[1].Data, &stored); err != nil || stored != first.Events[0] {
				t.Fatalf("stored event %s (%v), first result %+v", recs[1].Data, err, first.Events)
			}
		})
	}
}

// An append the store takes for a repeat of events that are not the
// command's (another writer used the ids without the command id) is refused,
// not answered with the decided events that were never written.
func TestRepeatOfEventsWithoutTheCommandID(t *testing.T) {
	ctx := context.Background()
	k := command.WithID(ctx, "K")
	// The ids command K derives on account-1, found by handling it elsewhere.
	elsewhere := memory.New()
	eh := mustHandler(t, elsewhere, command.Config{})
	if _, err := eh.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eh.Handle(k, "1", deposit{Amount: 5}); err != nil {
		t.Fatal(err)
	}
	derived := readAll(t, elsewhere, "account-1")[1].ID

	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "account-1", eventstore.Exact(1),
		eventstore.Event{ID: derived, Type: "account.deposited", Data: []byte(`{"Amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	res, err := h.Handle(k, "1", deposit{Amount: 5})
	if !errors.Is(err, command.ErrIdempotencyConflict) {
		t.Fatalf("Handle = %+v, %v; want ErrIdempotencyConflict", res, err)
	}
	if _, err := h.Handle(ctx, "1", withdraw{Amount: 2}); !errors.Is(err, errInsufficientFunds) {
		t.Fatalf("withdraw 2 from a balance of 1: %v; want errInsufficientFunds", err)
	}
}
