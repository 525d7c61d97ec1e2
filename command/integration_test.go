package command_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
)

// TestConcurrentConflictingCommands sends commands that all conflict (one
// account, one stream) from 64 goroutines through 8 Handlers: deposits and withdrawals whose sum
// exceeds the balance, so that the order of commits decides which withdrawals
// are refused. It checks that no update is lost, that every accepted command's
// event is in the stream exactly once at the place its Result names, that the
// balance never goes negative, and that every accepted command, handled again
// with its id, answers its original Result.
func TestConcurrentConflictingCommands(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			testConcurrentConflictingCommands(t, be)
		})
	}
}

func testConcurrentConflictingCommands(t *testing.T, be backend) {
	const (
		goroutines  = 64
		perRoutine  = 4
		opening     = 500
		depositAmt  = 2
		withdrawAmt = 7
	)
	// A guard against a hang, generous for a loaded CI machine; the test takes
	// seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store := be.open(t)
	// Attempts are bounded by the deadline, not by a count: every command must
	// end accepted or refused by the domain. Eight Handlers, as if in eight
	// processes, each shared by eight goroutines: within a Handler commands to
	// the stream take turns, across Handlers they conflict in the store.
	cfg := command.Config{MaxAttempts: 1 << 20, MinBackoff: 50 * time.Microsecond, MaxBackoff: 5 * time.Millisecond}
	const processes = 8
	handlers := make([]*command.Handler[account, accountCommand, accountEvent], processes)
	for i := range handlers {
		handlers[i] = mustHandler(t, store, cfg)
	}
	h := handlers[0]
	if _, err := h.Handle(ctx, "hot", openWithDeposit{Owner: "ann", Amount: opening}); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		key string
		cmd accountCommand
		res command.Result[accountEvent]
		err error
	}
	outcomes := make([]outcome, goroutines*perRoutine)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for c := range perRoutine {
				o := &outcomes[g*perRoutine+c]
				o.key = fmt.Sprintf("g%d-c%d", g, c)
				o.cmd = accountCommand(withdraw{Amount: withdrawAmt})
				if c%3 == 2 {
					o.cmd = deposit{Amount: depositAmt}
				}
				o.res, o.err = handlers[g%processes].Handle(command.WithID(ctx, o.key), "hot", o.cmd)
			}
		})
	}
	close(start)
	wg.Wait()

	accepted := map[string]outcome{}
	var refused, balance int64 = 0, opening
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			accepted[o.key] = o
			switch c := o.cmd.(type) {
			case deposit:
				balance += c.Amount
			case withdraw:
				balance -= c.Amount
			}
		case errors.Is(o.err, errInsufficientFunds) && errors.Is(o.err, command.ErrRejected):
			refused++
		default:
			t.Fatalf("command %s: %v", o.key, o.err)
		}
	}
	if refused == 0 {
		t.Fatal("no withdrawal was refused: the test does not exercise the invariant")
	}

	recs := readAll(t, store, "account-hot")
	seen := map[string]int{}
	var running int64
	for i, r := range recs {
		if r.Version != uint64(i+1) {
			t.Fatalf("record %d has version %d", i, r.Version)
		}
		v, err := accountRegistry().Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		running = accountDecider.Evolve(account{Open: true, Balance: running}, v.(accountEvent)).Balance
		if running < 0 {
			t.Fatalf("balance %d after version %d", running, r.Version)
		}
		if i < 2 {
			continue // the opening command
		}
		key := r.Metadata.Headers[command.HeaderCommandID]
		seen[key]++
		o, ok := accepted[key]
		switch {
		case !ok:
			t.Fatalf("version %d was written by %q, which was not accepted", r.Version, key)
		case o.res.Version != r.Version || o.res.Position != r.Position:
			t.Fatalf("command %s: result says version %d position %v, the event is at version %d position %v",
				key, o.res.Version, o.res.Position, r.Version, r.Position)
		}
	}
	for key := range accepted {
		if seen[key] != 1 {
			t.Fatalf("accepted command %s has %d events in the stream, want 1", key, seen[key])
		}
	}
	if len(recs)-2 != len(accepted) {
		t.Fatalf("%d events for %d accepted commands: an update was lost or doubled", len(recs)-2, len(accepted))
	}
	if running != balance {
		t.Fatalf("stream balance %d, accepted commands add up to %d", running, balance)
	}
	// Every accepted command, handled again, answers what it answered first.
	for key, o := range accepted {
		again, err := h.Handle(command.WithID(ctx, key), "hot", o.cmd)
		if err != nil || again.Version != o.res.Version || again.Position != o.res.Position {
			t.Fatalf("command %s again: %+v, %v; first %+v", key, again, err, o.res)
		}
	}
	t.Logf("%s: %d accepted, %d refused, final balance %d", be.name, len(accepted), refused, balance)
}
