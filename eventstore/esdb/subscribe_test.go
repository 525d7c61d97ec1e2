package esdb

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/eventline/eventline/eventstore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func seq(n uint64) eventstore.Position { return eventstore.Position{Commit: n, Prepare: n} }

func TestResumerAdmitsOnlyNewPositions(t *testing.T) {
	r := &resumer{last: seq(20)}
	if _, ok := r.from().(esdb.Position); !ok {
		t.Fatalf("from = %#v, want a Position", r.from())
	}
	// A reconnection that replays the boundary and earlier records, then new
	// ones, including a multi-event transaction sharing a commit position.
	replay := []eventstore.Position{
		seq(10), seq(20), seq(30), seq(30), {Commit: 40, Prepare: 35}, {Commit: 40, Prepare: 38}, {Commit: 40, Prepare: 35}, seq(50),
	}
	var admitted []eventstore.Position
	for _, p := range replay {
		if r.admit(p) {
			admitted = append(admitted, p)
		}
	}
	want := []eventstore.Position{seq(30), {Commit: 40, Prepare: 35}, {Commit: 40, Prepare: 38}, seq(50)}
	if !slices.Equal(admitted, want) {
		t.Fatalf("admitted %v, want %v", admitted, want)
	}
	if r.last != seq(50) {
		t.Fatalf("last = %v", r.last)
	}
	if _, ok := (&resumer{}).from().(esdb.Start); !ok {
		t.Fatalf("a subscription from Start must start at the client's Start")
	}
}

// TestSubscribeResumesWithoutDuplicatesOrGaps drops the subscription twice
// through the real client: once after three records, once before the
// confirmation. The second subscription replays the last delivered record and
// one before it; the caller must see every record once, in order.
func TestSubscribeResumesWithoutDuplicatesOrGaps(t *testing.T) {
	ev := func(n uint64) *api.ReadResp { return fakeEvent("cart-1", n, 10*n, 10*n, "cart.x", []byte(`{}`), nil) }
	f := &fakeServer{onRead: func(n int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		switch n {
		case 1:
			if err := confirm(srv); err != nil {
				return err
			}
			for _, r := range []*api.ReadResp{ev(1), ev(2), fakeEvent("$$x", 0, 25, 25, "$metadata", nil, nil), ev(3)} {
				if err := srv.Send(r); err != nil {
					return err
				}
			}
			return status.Error(codes.Unavailable, "node restarting")
		case 2:
			return status.Error(codes.Unavailable, "still restarting")
		default:
			if err := confirm(srv); err != nil {
				return err
			}
			for _, r := range []*api.ReadResp{ev(2), ev(3), ev(4), ev(5)} {
				if err := srv.Send(r); err != nil {
					return err
				}
			}
			<-srv.Context().Done()
			return srv.Context().Err()
		}
	}}
	s := startFake(t, f, "")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []eventstore.Position
	var versions []uint64
	for rec, err := range s.Subscribe(ctx, eventstore.Start) {
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, rec.Position)
		versions = append(versions, rec.Version)
		if len(got) == 5 {
			break
		}
	}
	if want := []eventstore.Position{seq(10), seq(20), seq(30), seq(40), seq(50)}; !slices.Equal(got, want) {
		t.Fatalf("positions = %v, want %v", got, want)
	}
	if want := []uint64{2, 3, 4, 5, 6}; !slices.Equal(versions, want) {
		t.Fatalf("versions = %v, want %v", versions, want)
	}

	first := f.read(t, 0).GetOptions()
	if _, ok := first.GetAll().GetAllOption().(*api.ReadReq_Options_AllOptions_Start); !ok {
		t.Errorf("first subscription from %#v, want Start", first.GetAll().GetAllOption())
	}
	filter := first.GetFilter()
	if filter == nil || filter.GetEventType().GetRegex() != esdb.ExcludeSystemEventsFilter().Regex {
		t.Errorf("subscription filter = %v, want the client's ExcludeSystemEventsFilter on the server", filter)
	}
	for i := 1; i < 3; i++ {
		pos := f.read(t, i).GetOptions().GetAll().GetPosition()
		if pos.GetCommitPosition() != 30 || pos.GetPreparePosition() != 30 {
			t.Errorf("resubscription %d from %v, want the last delivered position 30/30", i, pos)
		}
	}
}

// TestSubscribeEnds checks that a subscription retrying against an
// unreachable server ends with the context's error when the context ends, and
// with ErrClosed when the store closes.
func TestSubscribeEnds(t *testing.T) {
	open := func() *Store {
		s, err := Open(t.Context(), Config{
			URL:    "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1",
			Logger: discardLogger(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	s := open()
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var errs []error
	for _, err := range s.Subscribe(ctx, eventstore.Start) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Fatalf("errors = %v, want one DeadlineExceeded", errs)
	}

	s2 := open()
	done := make(chan []error)
	go func() {
		var errs []error
		for _, err := range s2.Subscribe(t.Context(), eventstore.Start) {
			errs = append(errs, err)
		}
		done <- errs
	}()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case errs := <-done:
		if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrClosed) {
			t.Fatalf("errors = %v, want one ErrClosed", errs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("subscription did not end after Close")
	}
}
