package command_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"sync"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// readCounter records where each ReadStream started and how many records it
// yielded.
type readCounter struct {
	eventstore.Store
	mu    sync.Mutex
	froms []uint64
	read  int
}

func (s *readCounter) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	s.mu.Lock()
	s.froms = append(s.froms, from)
	s.mu.Unlock()
	return func(yield func(eventstore.Record, error) bool) {
		for rec, err := range s.Store.ReadStream(ctx, stream, from) {
			if err == nil {
				s.mu.Lock()
				s.read++
				s.mu.Unlock()
			}
			if !yield(rec, err) {
				return
			}
		}
	}
}

// reset returns the reads since the last reset.
func (s *readCounter) reset() (froms []uint64, read int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	froms, read = s.froms, s.read
	s.froms, s.read = nil, 0
	return froms, read
}

func TestCacheReadsOnlyNewEvents(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			store := &readCounter{Store: be.open(t)}
			h := mustHandler(t, store, command.Config{})
			if _, err := h.Handle(ctx, "1", openWithDeposit{Owner: "ann", Amount: 5}); err != nil {
				t.Fatal(err)
			}
			store.reset()
			for i := range 20 {
				if _, err := h.Handle(ctx, "1", deposit{Amount: 1}); err != nil {
					t.Fatal(err)
				}
				// Each command decides on the cached state, its own
				// predecessor's events included, and appends at the cached
				// version without reading the stream at all.
				if froms, read := store.reset(); len(froms) != 0 || read != 0 {
					t.Fatalf("command %d read from %v, %d records; want no read", i, froms, read)
				}
			}
			// Another writer (another process, or another Handler) appends:
			// the next command's append at the cached version is refused, and
			// its retry reloads the stream; no update is lost.
			other := mustHandler(t, store.Store, command.Config{NoCache: true})
			if _, err := other.Handle(ctx, "1", withdraw{Amount: 4}); err != nil {
				t.Fatal(err)
			}
			store.reset()
			res, err := h.Handle(ctx, "1", withdraw{Amount: 21})
			if err != nil {
				t.Fatal(err)
			}
			if froms, read := store.reset(); !reflect.DeepEqual(froms, []uint64{1}) || read != 23 || res.Version != 24 {
				t.Fatalf("after another writer: read from %v, %d records, result %+v", froms, read, res)
			}
			if got := accountDecider.Fold(decodeAll(t, store.Store, "account-1")...).Balance; got != 0 {
				t.Fatalf("balance %d, want 0", got)
			}
			// The cached state is exact: one more unit is refused.
			if _, err := h.Handle(ctx, "1", withdraw{Amount: 1}); !errors.Is(err, errInsufficientFunds) {
				t.Fatalf("overdraft: %v", err)
			}
		})
	}
}

func TestNoCacheReadsWholeStream(t *testing.T) {
	ctx := context.Background()
	store := &readCounter{Store: memory.New()}
	h := mustHandler(t, store, command.Config{NoCache: true})
	for i := range 3 {
		if _, err := h.Handle(ctx, "1", []accountCommand{openAccount{Owner: "a"}, deposit{Amount: 1}, deposit{Amount: 1}}[i]); err != nil {
			t.Fatal(err)
		}
		if froms, read := store.reset(); !reflect.DeepEqual(froms, []uint64{1}) || read != i {
			t.Fatalf("command %d read from %v, %d records", i, froms, read)
		}
	}
}

// mapState is a state that Evolve mutates in place, as domain code may.
type mapState struct{ seen map[string]int }

type mapEvent struct{ Key string }

type mapCommand struct {
	Key  string
	Fail bool // Decide refuses, after peeking at the state
}

var errRefused = errors.New("refused")

func mapDecider(evolved *int) command.Decider[mapState, mapCommand, mapEvent] {
	return command.Decider[mapState, mapCommand, mapEvent]{
		Initial: func() mapState { return mapState{seen: map[string]int{}} },
		Decide: func(s mapState, c mapCommand) ([]mapEvent, error) {
			if c.Fail {
				return nil, errRefused
			}
			if s.seen[c.Key] > 0 {
				return nil, nil
			}
			return []mapEvent{{Key: c.Key}}, nil
		},
		Evolve: func(s mapState, e mapEvent) mapState {
			*evolved++
			s.seen[e.Key]++ // in place: the cached state itself changes
			return s
		},
	}
}

func mapHandler(t *testing.T, store eventstore.Store, evolved *int) *command.Handler[mapState, mapCommand, mapEvent] {
	t.Helper()
	reg := eventstore.NewRegistry()
	eventstore.Register[mapEvent](reg, "map.event")
	h, err := command.NewHandler(store, reg, mapDecider(evolved), command.Config{Name: "map"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// After any failed attempt the cached state is dropped and the stream
// reloaded, so a state mutated in place is never reused half-applied.
func TestCacheDroppedOnError(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	failAppend := false
	store := &hookStore{Store: mem, before: func(_ int64, _ string, _ []eventstore.Event) error {
		if failAppend {
			return eventstore.ErrUnavailable
		}
		return nil
	}}
	counted := &readCounter{Store: store}
	var evolved int
	h := mapHandler(t, counted, &evolved)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := h.Handle(ctx, "1", mapCommand{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	counted.reset()
	evolved = 0

	// A refusal is checked against what the stream gained (a read from
	// version 4), then drops the entry: the next command reloads from version 1.
	if _, err := h.Handle(ctx, "1", mapCommand{Fail: true}); !errors.Is(err, errRefused) {
		t.Fatalf("refusal: %v", err)
	}
	if _, err := h.Handle(ctx, "1", mapCommand{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	if froms, _ := counted.reset(); !reflect.DeepEqual(froms, []uint64{4, 1}) || evolved != 3 {
		t.Fatalf("after a refusal: reads from %v, %d evolves; want [4 1], 3", froms, evolved)
	}

	// A failed append drops it too.
	failAppend = true
	if _, err := h.Handle(ctx, "1", mapCommand{Key: "d"}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("failed append: %v", err)
	}
	failAppend = false
	evolved = 0
	res, err := h.Handle(ctx, "1", mapCommand{Key: "d"})
	if err != nil || res.Version != 4 {
		t.Fatalf("after a failed append: %+v, %v", res, err)
	}
	// The failed command read nothing (it trusted the cache); the next one
	// reloads from version 1.
	if froms, _ := counted.reset(); !reflect.DeepEqual(froms, []uint64{1}) || evolved != 4 {
		t.Fatalf("after a failed append: reads from %v, %d evolves; want [1], 4 (3 reloaded, 1 appended)", froms, evolved)
	}
	// Each key was counted once: nothing was folded twice into the state.
	if _, err := h.Handle(ctx, "1", mapCommand{Key: "d"}); err != nil {
		t.Fatal(err)
	}
	if n := len(readAll(t, mem, "map-1")); n != 4 {
		t.Fatalf("stream has %d events, want 4", n)
	}
}

// A keyed command repeated after the stream moved on is recognised from the
// cache, and its events read back.
func TestCacheIdempotentRepeat(t *testing.T) {
	for _, noCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", !noCache), func(t *testing.T) {
			ctx := context.Background()
			store := memory.New()
			h := mustHandler(t, store, command.Config{NoCache: noCache})
			kctx := command.WithID(ctx, "k")
			first, err := h.Handle(kctx, "1", openWithDeposit{Owner: "ann", Amount: 3})
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if _, err := h.Handle(ctx, "1", deposit{Amount: 1}); err != nil {
					t.Fatal(err)
				}
			}
			again, err := h.Handle(kctx, "1", openWithDeposit{Owner: "ann", Amount: 3})
			if err != nil || !reflect.DeepEqual(again, first) {
				t.Fatalf("repeat: %+v, %v; want %+v", again, err, first)
			}
			if _, err := h.Handle(kctx, "1", deposit{Amount: 3}); !errors.Is(err, command.ErrIdempotencyConflict) {
				t.Fatalf("reused id: %v", err)
			}
			if n := len(readAll(t, store, "account-1")); n != 7 {
				t.Fatalf("stream has %d events, want 7", n)
			}
		})
	}
}

// Past the number of command ids an entry remembers, keyed commands reload
// the stream, and a repeat of the oldest is still recognised.
func TestCacheManyCommandIDs(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{})
	if _, err := h.Handle(command.WithID(ctx, "k-0"), "1", openAccount{Owner: "a"}); err != nil {
		t.Fatal(err)
	}
	const n = 1100 // more than the entry remembers
	for i := 1; i < n; i++ {
		if _, err := h.Handle(command.WithID(ctx, fmt.Sprint("k-", i)), "1", deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 1, n - 1} {
		cmd := accountCommand(deposit{Amount: 1})
		if i == 0 {
			cmd = openAccount{Owner: "a"}
		}
		res, err := h.Handle(command.WithID(ctx, fmt.Sprint("k-", i)), "1", cmd)
		if err != nil || res.Version != uint64(i+1) {
			t.Fatalf("repeat of k-%d: %+v, %v; want version %d", i, res, err, i+1)
		}
	}
	if got := len(readAll(t, store, "account-1")); got != n {
		t.Fatalf("stream has %d events, want %d", got, n)
	}
}

// The cache is bounded: many streams through a small cache stay correct.
func TestCacheEviction(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	h := mustHandler(t, store, command.Config{CacheSize: 2})
	for round := range 3 {
		for id := range 5 {
			cmd := accountCommand(deposit{Amount: 1})
			if round == 0 {
				cmd = openAccount{Owner: "a"}
			}
			if _, err := h.Handle(ctx, fmt.Sprint(id), cmd); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id := range 5 {
		if got := accountDecider.Fold(decodeAll(t, store, fmt.Sprint("account-", id))...).Balance; got != 2 {
			t.Fatalf("account %d balance %d, want 2", id, got)
		}
	}
	if _, err := command.NewHandler(store, accountRegistry(), accountDecider, command.Config{Name: "a", CacheSize: -1}); err == nil {
		t.Fatal("negative CacheSize accepted")
	}
}

// A refusal cannot be checked by the store's expected version the way an
// append is, so one decided on a cached state is decided again on the state
// as read: a command that a stale cache would refuse goes through.
func TestCachedRefusalIsDecidedAgainOnCurrentState(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			store := &readCounter{Store: be.open(t)}
			h := mustHandler(t, store, command.Config{})
			if _, err := h.Handle(ctx, "1", openWithDeposit{Owner: "ann", Amount: 5}); err != nil {
				t.Fatal(err)
			}
			other := mustHandler(t, store.Store, command.Config{NoCache: true})
			if _, err := other.Handle(ctx, "1", deposit{Amount: 10}); err != nil {
				t.Fatal(err)
			}
			store.reset()
			// The cached balance is 5; the stream's is 15.
			res, err := h.Handle(ctx, "1", withdraw{Amount: 12})
			if err != nil {
				t.Fatalf("withdraw 12 of 15 refused on a stale cached state: %v", err)
			}
			if froms, read := store.reset(); len(froms) != 1 || read != 1 || res.Version != 4 {
				t.Fatalf("read from %v, %d records, result %+v; want one read of the one new event, version 4", froms, read, res)
			}
			if got := accountDecider.Fold(decodeAll(t, store.Store, "account-1")...).Balance; got != 3 {
				t.Fatalf("balance %d, want 3", got)
			}
		})
	}
}
