package command_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/google/uuid"
)

// hookStore lets a test act before or instead of an append.
type hookStore struct {
	eventstore.Store
	appends atomic.Int64
	// before runs before each append; a non-nil error is returned instead of
	// appending.
	before func(n int64, stream string, events []eventstore.Event) error
	// after runs after each append, and may replace its error.
	after func(n int64, err error) error
}

func (s *hookStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	n := s.appends.Add(1)
	if s.before != nil {
		if err := s.before(n, stream, events); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	res, err := s.Store.Append(ctx, stream, expected, events...)
	if s.after != nil {
		err = s.after(n, err)
	}
	return res, err
}

func readAll(t *testing.T, store eventstore.Store, stream string) []eventstore.Record {
	t.Helper()
	var recs []eventstore.Record
	for rec, err := range store.ReadStream(context.Background(), stream, 1) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func mustHandler(t testing.TB, store eventstore.Store, cfg command.Config) *command.Handler[account, accountCommand, accountEvent] {
	t.Helper()
	h, err := newAccounts(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewHandlerValidates(t *testing.T) {
	store, reg := memory.New(), accountRegistry()
	if _, err := command.NewHandler(nil, reg, accountDecider, command.Config{Name: "a"}); !errors.Is(err, command.ErrInvalidConfig) {
		t.Errorf("nil store: %v, want ErrInvalidConfig", err)
	}
	if _, err := command.NewHandler(store, nil, accountDecider, command.Config{Name: "a"}); !errors.Is(err, command.ErrInvalidConfig) {
		t.Errorf("nil registry: %v, want ErrInvalidConfig", err)
	}
	d := accountDecider
	d.Evolve = nil
	if _, err := command.NewHandler(store, reg, d, command.Config{Name: "a"}); !errors.Is(err, command.ErrInvalidConfig) {
		t.Errorf("decider without Evolve: %v, want ErrInvalidConfig", err)
	}
	for _, cfg := range []command.Config{
		{},
		{Name: "car:t"},
		{Name: strings.Repeat("n", command.MaxNameLen+1)},
		{Name: "a", MaxAttempts: -1},
		{Name: "a", MinBackoff: -1},
		{Name: "a", MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if err := cfg.Validate(); !errors.Is(err, command.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
		if _, err := command.NewHandler(store, reg, accountDecider, cfg); !errors.Is(err, command.ErrInvalidConfig) {
			t.Errorf("NewHandler(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if err := (command.Config{Name: "cart.v2_x~y-z"}).Validate(); err != nil {
		t.Errorf("Validate of a good name: %v", err)
	}
}

func TestEntityIDs(t *testing.T) {
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	bad := []string{"", strings.Repeat("x", command.MaxIDLen+1), "a b", "a:b", "{a}", "a/b", "é", "a\x00", "$all", "a*"}
	for _, id := range bad {
		if _, err := h.Handle(context.Background(), id, openAccount{Owner: "x"}); !errors.Is(err, command.ErrInvalidID) {
			t.Errorf("Handle(%q) error = %v, want ErrInvalidID", id, err)
		}
		if _, err := h.StreamID(id); !errors.Is(err, command.ErrInvalidID) {
			t.Errorf("StreamID(%q) error = %v, want ErrInvalidID", id, err)
		}
	}
	if head, _ := store.Head(context.Background()); !head.IsZero() {
		t.Fatalf("invalid ids wrote events: head %v", head)
	}
	for _, id := range []string{"a", "A-z_0.9~", strings.Repeat("x", command.MaxIDLen)} {
		res, err := h.Handle(context.Background(), id, openAccount{Owner: "x"})
		if err != nil {
			t.Fatalf("Handle(%q): %v", id, err)
		}
		if res.StreamID != "account-"+id {
			t.Errorf("stream = %q, want %q", res.StreamID, "account-"+id)
		}
	}
}

func TestHandleWritesAndFolds(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	res, err := h.Handle(ctx, "1", openAccount{Owner: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	want := command.Result[accountEvent]{StreamID: "account-1", Version: 1, Position: eventstore.SeqPosition(1),
		Events: []accountEvent{accountOpened{Owner: "ann"}}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("open: %+v, want %+v", res, want)
	}
	// Another stream in between, so that positions and versions differ.
	if _, err := h.Handle(ctx, "2", openAccount{Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, "1", deposit{Amount: 10}); err != nil {
		t.Fatal(err)
	}
	// The withdrawal is only possible if the deposit was folded in.
	res, err = h.Handle(ctx, "1", withdraw{Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	want = command.Result[accountEvent]{StreamID: "account-1", Version: 3, Position: eventstore.SeqPosition(4),
		Events: []accountEvent{withdrawn{Amount: 10}}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("withdraw: %+v, want %+v", res, want)
	}
	recs := readAll(t, store, "account-1")
	types := make([]string, len(recs))
	for i, r := range recs {
		types[i] = r.Type
	}
	if got := strings.Join(types, ","); got != "account.opened,account.deposited,account.withdrawn" {
		t.Fatalf("stream holds %s", got)
	}
}

func TestRejectedCommands(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.Handle(ctx, "1", withdraw{Amount: 1})
	if !errors.Is(err, errInsufficientFunds) || !errors.Is(err, command.ErrRejected) {
		t.Fatalf("overdraft error = %v, want errInsufficientFunds and ErrRejected", err)
	}
	var od *overdraftError
	var rej *command.RejectedError
	if !errors.As(err, &od) || od.Amount != 1 || !errors.As(err, &rej) || rej.StreamID != "account-1" {
		t.Fatalf("errors.As on %v: overdraft %+v, rejected %+v", err, od, rej)
	}
	if errors.Is(err, eventstore.ErrWrongVersion) || errors.Is(err, command.ErrConflict) {
		t.Fatalf("a domain error matches an infrastructure error: %v", err)
	}
	if n := len(readAll(t, store, "account-1")); n != 1 {
		t.Fatalf("a rejected command wrote: stream has %d events", n)
	}
	// Infrastructure errors are not ErrRejected.
	_, err = mustHandler(t, &hookStore{Store: store, before: func(int64, string, []eventstore.Event) error {
		return eventstore.ErrUnavailable
	}}, command.Config{}).Handle(ctx, "1", deposit{Amount: 1})
	if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, command.ErrRejected) {
		t.Fatalf("store failure = %v, want ErrUnavailable and not ErrRejected", err)
	}
}

func TestNoEventsWritesNothing(t *testing.T) {
	ctx := context.Background()
	store := &hookStore{Store: memory.New()}
	h := mustHandler(t, store, command.Config{})
	// Refused on a new stream: nothing is created.
	if _, err := h.Handle(ctx, "1", checkBalance{}); !errors.Is(err, errNotOpen) {
		t.Fatalf("checkBalance on a new account: %v", err)
	}
	if _, err := h.Handle(ctx, "0", openAccount{Owner: "z"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	before := store.appends.Load()
	res, err := h.Handle(ctx, "1", checkBalance{})
	if err != nil {
		t.Fatal(err)
	}
	want := command.Result[accountEvent]{StreamID: "account-1", Version: 1, Position: eventstore.SeqPosition(2)}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("no-op result %+v, want %+v", res, want)
	}
	if store.appends.Load() != before {
		t.Fatal("a decision of no events called Append")
	}
}

func TestRetriesOnConcurrentWrite(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	var sneak func() error
	store := &hookStore{Store: mem, before: func(n int64, stream string, _ []eventstore.Event) error {
		if n == 2 { // the deposit's first append: another writer deposits first
			return sneak()
		}
		return nil
	}}
	h := mustHandler(t, store, command.Config{})
	other := mustHandler(t, mem, command.Config{})
	sneak = func() error {
		_, err := other.Handle(ctx, "1", deposit{Amount: 5})
		return err
	}
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	// The deposit's first append meets the other writer's deposit, so Handle
	// reloads, decides again and appends after it.
	res, err := h.Handle(ctx, "1", deposit{Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 3 || store.appends.Load() != 3 {
		t.Fatalf("result %+v after %d appends, want version 3 after 3 appends", res, store.appends.Load())
	}
	if got := accountDecider.Fold(decodeAll(t, mem, "account-1")...); got.Balance != 6 {
		t.Fatalf("balance %d, want 6: an update was lost", got.Balance)
	}
}

func decodeAll(t *testing.T, store eventstore.Store, stream string) []accountEvent {
	t.Helper()
	reg := accountRegistry()
	var out []accountEvent
	for _, rec := range readAll(t, store, stream) {
		v, err := reg.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v.(accountEvent))
	}
	return out
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	store := &hookStore{Store: mem, before: func(_ int64, stream string, _ []eventstore.Event) error {
		return &eventstore.WrongVersionError{StreamID: stream, Expected: eventstore.NoStream, Actual: 1}
	}}
	h := mustHandler(t, store, command.Config{MaxAttempts: 4, MinBackoff: time.Microsecond, MaxBackoff: time.Microsecond})
	_, err := h.Handle(ctx, "1", openAccount{Owner: "ann"})
	if !errors.Is(err, command.ErrConflict) || !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("error = %v, want ErrConflict and ErrWrongVersion", err)
	}
	var wv *eventstore.WrongVersionError
	if !errors.As(err, &wv) || !strings.Contains(err.Error(), "account-1") || !strings.Contains(err.Error(), "4 attempts") {
		t.Fatalf("error %q does not explain itself", err)
	}
	if n := store.appends.Load(); n != 4 {
		t.Fatalf("%d appends, want 4", n)
	}

	// Default bound.
	store.appends.Store(0)
	h = mustHandler(t, store, command.Config{MinBackoff: time.Microsecond, MaxBackoff: time.Microsecond})
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "ann"}); !errors.Is(err, command.ErrConflict) {
		t.Fatal(err)
	}
	if n := store.appends.Load(); n != command.DefaultMaxAttempts {
		t.Fatalf("%d appends, want %d", n, command.DefaultMaxAttempts)
	}
}

func TestBackoffStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	store := &hookStore{Store: memory.New(), before: func(n int64, stream string, _ []eventstore.Event) error {
		cancel()
		return &eventstore.WrongVersionError{StreamID: stream, Expected: eventstore.NoStream, Actual: 1}
	}}
	h := mustHandler(t, store, command.Config{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	_, err := h.Handle(ctx, "1", openAccount{Owner: "ann"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

func TestLoadErrorsAreNotRejections(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	if _, err := store.Append(ctx, "account-1", eventstore.NoStream, eventstore.Event{Type: "account.mystery"}); err != nil {
		t.Fatal(err)
	}
	h := mustHandler(t, store, command.Config{})
	_, err := h.Handle(ctx, "1", openAccount{Owner: "ann"})
	if !errors.Is(err, eventstore.ErrUnknownEventType) || errors.Is(err, command.ErrRejected) {
		t.Fatalf("error = %v, want ErrUnknownEventType", err)
	}
	// A registered type that is not one of the decider's events.
	reg := accountRegistry()
	eventstore.Register[struct{ X int }](reg, "account.mystery")
	h2, err := command.NewHandler(store, reg, accountDecider, command.Config{Name: "account"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Handle(ctx, "1", openAccount{Owner: "ann"}); !errors.Is(err, eventstore.ErrDecode) {
		t.Fatalf("error = %v, want ErrDecode", err)
	}
	store.Close()
	if _, err := h.Handle(ctx, "2", openAccount{Owner: "ann"}); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("closed store: %v", err)
	}
}

func TestMetadata(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{})

	// No metadata at all: a fresh correlation id per command, no causation.
	for i := range 2 {
		if _, err := h.Handle(ctx, "1", []accountCommand{openAccount{Owner: "a"}, deposit{Amount: 1}}[i]); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, store, "account-1")
	for _, r := range recs {
		if _, err := uuid.Parse(r.Metadata.CorrelationID); err != nil || r.Metadata.CausationID != "" {
			t.Fatalf("default metadata %+v", r.Metadata)
		}
	}
	if recs[0].Metadata.CorrelationID == recs[1].Metadata.CorrelationID {
		t.Fatal("two commands share a generated correlation id")
	}

	// Explicit metadata is written as given, headers included.
	md := eventstore.Metadata{CorrelationID: "corr", CausationID: "cause", Headers: map[string]string{"user": "ann"}}
	mctx := command.WithMetadata(ctx, md)
	md.Headers["user"] = "mallory" // WithMetadata copied the headers
	if _, err := h.Handle(mctx, "1", deposit{Amount: 2}); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, store, "account-1")[2].Metadata
	want := eventstore.Metadata{CorrelationID: "corr", CausationID: "cause", Headers: map[string]string{"user": "ann"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("metadata %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(command.MetadataFrom(mctx), want) {
		t.Fatalf("MetadataFrom = %+v", command.MetadataFrom(mctx))
	}

	// A command id is the default correlation and causation id.
	if _, err := h.Handle(command.WithID(ctx, "key-1"), "1", deposit{Amount: 3}); err != nil {
		t.Fatal(err)
	}
	got = readAll(t, store, "account-1")[3].Metadata
	if got.CorrelationID != "key-1" || got.CausationID != "key-1" || got.Headers[command.HeaderCommandID] != "key-1" ||
		got.Headers[command.HeaderCommandHash] == "" {
		t.Fatalf("keyed metadata %+v", got)
	}

	// An event handled by a saga: its id becomes the causation, its correlation
	// carries on, and headers already in the context are kept.
	cause := readAll(t, store, "account-1")[2]
	sctx := command.CausedBy(command.WithMetadata(ctx, eventstore.Metadata{Headers: map[string]string{"saga": "s1"}}), cause)
	if _, err := h.Handle(sctx, "2", openAccount{Owner: "b"}); err != nil {
		t.Fatal(err)
	}
	got = readAll(t, store, "account-2")[0].Metadata
	want = eventstore.Metadata{CorrelationID: "corr", CausationID: cause.ID.String(), Headers: map[string]string{"saga": "s1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("caused-by metadata %+v, want %+v", got, want)
	}
	// A cause without correlation id starts a correlation at itself.
	first := readAll(t, store, "account-2")[0]
	first.Metadata.CorrelationID = ""
	if md := command.MetadataFrom(command.CausedBy(ctx, first)); md.CorrelationID != first.ID.String() || md.CausationID != first.ID.String() {
		t.Fatalf("CausedBy without correlation: %+v", md)
	}
}

// Within one Handler, concurrent commands to one stream take turns: none of
// them meets a version conflict, so each appends exactly once.
func TestHandlerQueuesCommandsPerStream(t *testing.T) {
	ctx := context.Background()
	store := &hookStore{Store: memory.New()}
	h := mustHandler(t, store, command.Config{MaxAttempts: 1})
	if _, err := h.Handle(ctx, "1", openAccount{Owner: "a"}); err != nil {
		t.Fatal(err)
	}
	const callers = 64
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			id := []string{"1", "2"}[i%2] // two streams: queues are per stream
			if id == "2" {
				_, errs[i] = h.Handle(command.WithID(ctx, fmt.Sprint(i)), id, openWithDeposit{Owner: "b", Amount: 1})
				if errors.Is(errs[i], errAlreadyOpen) {
					errs[i] = nil
				}
				return
			}
			_, errs[i] = h.Handle(ctx, id, deposit{Amount: 1})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v (MaxAttempts is 1: a conflict fails)", i, err)
		}
	}
	if got := accountDecider.Fold(decodeAll(t, store, "account-1")...).Balance; got != callers/2 {
		t.Fatalf("balance %d, want %d", got, callers/2)
	}
	if n := store.appends.Load(); n != 1+callers/2+1 {
		t.Fatalf("%d appends, want %d", n, 1+callers/2+1)
	}
}

func TestWaitingForStreamStopsWithContext(t *testing.T) {
	store := memory.New()
	entered, release := make(chan struct{}), make(chan struct{})
	blocking := &hookStore{Store: store, before: func(n int64, _ string, _ []eventstore.Event) error {
		if n == 1 {
			close(entered)
			<-release
		}
		return nil
	}}
	h := mustHandler(t, blocking, command.Config{})
	done := make(chan error)
	go func() {
		_, err := h.Handle(context.Background(), "1", openAccount{Owner: "a"})
		done <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error)
	go func() {
		_, err := h.Handle(ctx, "1", openAccount{Owner: "b"})
		waiting <- err
	}()
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Handle: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The stream is usable again.
	if _, err := h.Handle(context.Background(), "1", deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
}
