package esdb

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func successReply(revision, commit, prepare uint64) *api.AppendResp {
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: revision},
		PositionOption: &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: commit, PreparePosition: prepare,
		}},
	}}}
}

// echoRead answers a read with the events of the server's last append as
// revisions from..., at positions 100 apart ending at last, after change
// (which may alter them) has seen each.
func echoRead(f *fakeServer, from, last uint64, change func(i int, ev *api.ReadResp_ReadEvent_RecordedEvent)) func(int, *api.ReadReq, api.Streams_ReadServer) error {
	return func(_ int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		f.mu.Lock()
		a := f.appends[len(f.appends)-1]
		f.mu.Unlock()
		for i, m := range a.events {
			pos := last - 100*uint64(len(a.events)-1-i)
			resp := fakeEvent(string(a.options.GetStreamIdentifier().GetStreamName()), from+uint64(i), pos, pos,
				m.GetMetadata()["type"], m.GetData(), m.GetCustomMetadata())
			rec := resp.GetEvent().GetEvent()
			rec.Id = m.GetId()
			rec.Metadata["content-type"] = m.GetMetadata()["content-type"]
			if change != nil {
				change(i, rec)
			}
			if err := srv.Send(resp); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestAppendThroughClient(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
		// The stream held revisions 0..2; the two events are revisions 3 and 4.
		return successReply(4, 900, 900), nil
	}}
	// Every id is the caller's: the store reads the events back, finds them
	// as sent, and reports a write.
	f.onRead = echoRead(f, 3, 900, nil)
	s := startFake(t, f, "")
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	res, err := s.Append(t.Context(), "cart-1", eventstore.Exact(3),
		eventstore.Event{ID: ids[0], Type: "cart.item_added", Data: []byte(`{"sku":"a"}`),
			Metadata: eventstore.Metadata{CorrelationID: "c1", Headers: map[string]string{"k": "v"}}},
		eventstore.Event{ID: ids[1], Type: "cart.blob", Data: []byte{0xff, 0x00}},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := eventstore.AppendResult{StreamID: "cart-1", FirstVersion: 4, LastVersion: 5,
		Position: eventstore.Position{Commit: 900, Prepare: 900}}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}

	got := f.lastAppend(t)
	if name := string(got.options.GetStreamIdentifier().GetStreamName()); name != "cart-1" {
		t.Errorf("stream = %q", name)
	}
	if rev, ok := got.options.GetExpectedStreamRevision().(*api.AppendReq_Options_Revision); !ok || rev.Revision != 2 {
		t.Errorf("expected revision sent = %#v, want Revision 2 for Exact(3)", got.options.GetExpectedStreamRevision())
	}
	if len(got.events) != 2 {
		t.Fatalf("server received %d events", len(got.events))
	}
	for i, e := range got.events {
		var id uuid.UUID
		if st := e.GetId().GetStructured(); st != nil {
			id = uuidFromBits(st)
		} else {
			id, _ = uuid.Parse(e.GetId().GetString_())
		}
		if id != ids[i] {
			t.Errorf("event %d id = %s, want %s", i, id, ids[i])
		}
	}
	if ct := got.events[0].GetMetadata()["content-type"]; ct != "application/json" {
		t.Errorf("JSON data sent as %q", ct)
	}
	if ct := got.events[1].GetMetadata()["content-type"]; ct != "application/octet-stream" {
		t.Errorf("binary data sent as %q", ct)
	}
	if meta := string(got.events[0].GetCustomMetadata()); meta != `{"correlation_id":"c1","headers":{"k":"v"}}` {
		t.Errorf("metadata bytes = %s", meta)
	}
	if meta := got.events[1].GetCustomMetadata(); len(meta) != 0 {
		t.Errorf("empty metadata sent as %q", meta)
	}
}

func uuidFromBits(st *shared.UUID_Structured) uuid.UUID {
	var id uuid.UUID
	for i := range 8 {
		id[i] = byte(uint64(st.MostSignificantBits) >> (56 - 8*i))
		id[8+i] = byte(uint64(st.LeastSignificantBits) >> (56 - 8*i))
	}
	return id
}

func TestAppendExpectedVersionsSent(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) { return successReply(0, 10, 10), nil }}
	s := startFake(t, f, "")
	for _, tc := range []struct {
		expected eventstore.ExpectedVersion
		check    func(any) bool
	}{
		{eventstore.Any, func(o any) bool { _, ok := o.(*api.AppendReq_Options_Any); return ok }},
		{eventstore.NoStream, func(o any) bool { _, ok := o.(*api.AppendReq_Options_NoStream); return ok }},
		{eventstore.Exact(0), func(o any) bool { _, ok := o.(*api.AppendReq_Options_NoStream); return ok }},
		{eventstore.StreamExists, func(o any) bool { _, ok := o.(*api.AppendReq_Options_StreamExists); return ok }},
		{eventstore.Exact(1), func(o any) bool { r, ok := o.(*api.AppendReq_Options_Revision); return ok && r.Revision == 0 }},
	} {
		if _, err := s.Append(t.Context(), "s", tc.expected, eventstore.Event{Type: "t"}); err != nil {
			t.Fatal(err)
		}
		if o := f.lastAppend(t).options.GetExpectedStreamRevision(); !tc.check(o) {
			t.Errorf("%s sent as %#v", tc.expected, o)
		}
	}
}

func TestAppendWrongExpectedVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current any
		actual  uint64
	}{
		{"revision", &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: 6}, 7},
		{"no stream", &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
				w := &api.AppendResp_WrongExpectedVersion{
					ExpectedRevisionOption: &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: 2},
				}
				switch c := tc.current.(type) {
				case *api.AppendResp_WrongExpectedVersion_CurrentRevision:
					w.CurrentRevisionOption = c
				case *api.AppendResp_WrongExpectedVersion_CurrentNoStream:
					w.CurrentRevisionOption = c
				}
				return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}, nil
			}}
			s := startFake(t, f, "")
			_, err := s.Append(t.Context(), "cart-9", eventstore.Exact(3), eventstore.Event{Type: "t"})
			if !errors.Is(err, eventstore.ErrWrongVersion) {
				t.Fatalf("err = %v, want ErrWrongVersion", err)
			}
			var wv *eventstore.WrongVersionError
			if !errors.As(err, &wv) {
				t.Fatalf("err %T is not a *WrongVersionError", err)
			}
			want := eventstore.WrongVersionError{StreamID: "cart-9", Expected: eventstore.Exact(3), Actual: tc.actual}
			if *wv != want {
				t.Fatalf("error = %+v, want %+v", *wv, want)
			}
		})
	}
}

func TestAppendToDeletedStream(t *testing.T) {
	f := &fakeServer{onAppend: func(ctx context.Context, a fakeAppend) (*api.AppendResp, error) {
		return nil, streamDeleted(ctx, string(a.options.GetStreamIdentifier().GetStreamName()))
	}}
	s := startFake(t, f, "")
	_, err := s.Append(t.Context(), "gone", eventstore.Any, eventstore.Event{Type: "t"})
	if !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("err = %v, want ErrStreamDeleted", err)
	}
}

func TestReadStreamThroughClient(t *testing.T) {
	meta := []byte(`{"correlation_id":"c","causation_id":"d"}`)
	f := &fakeServer{onRead: func(_ int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		for rev := uint64(2); rev < 4; rev++ {
			if err := srv.Send(fakeEvent("cart-1", rev, 100*rev, 100*rev, "cart.x", []byte(`{}`), meta)); err != nil {
				return err
			}
		}
		return nil
	}}
	s := startFake(t, f, "")
	var got []eventstore.Record
	for rec, err := range s.ReadStream(t.Context(), "cart-1", 3) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if rev, ok := f.read(t, 0).GetOptions().GetStream().GetRevisionOption().(*api.ReadReq_Options_StreamOptions_Revision); !ok || rev.Revision != 2 {
		t.Errorf("read from version 3 sent as %#v, want revision 2", f.read(t, 0).GetOptions().GetStream().GetRevisionOption())
	}
	if len(got) != 2 {
		t.Fatalf("got %d records", len(got))
	}
	for i, rec := range got {
		rev := uint64(2 + i)
		if rec.Version != rev+1 || rec.Position != (eventstore.Position{Commit: 100 * rev, Prepare: 100 * rev}) ||
			rec.StreamID != "cart-1" || rec.Type != "cart.x" || string(rec.Data) != "{}" {
			t.Errorf("record %d = %+v", i, rec)
		}
		if rec.Metadata.CorrelationID != "c" || rec.Metadata.CausationID != "d" {
			t.Errorf("record %d metadata = %+v", i, rec.Metadata)
		}
		if !rec.RecordedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("record %d recorded at %s", i, rec.RecordedAt)
		}
	}
}

func TestReadStreamErrors(t *testing.T) {
	f := &fakeServer{onRead: func(_ int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		name := string(req.GetOptions().GetStream().GetStreamIdentifier().GetStreamName())
		if name == "tombstoned" {
			return streamDeleted(srv.Context(), name)
		}
		return srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}}
	s := startFake(t, f, "")
	for stream, want := range map[string]error{
		"missing":    eventstore.ErrStreamNotFound,
		"tombstoned": eventstore.ErrStreamDeleted,
		"$system":    eventstore.ErrStreamNotFound,
		"":           eventstore.ErrStreamNotFound,
	} {
		var errs []error
		for rec, err := range s.ReadStream(t.Context(), stream, 1) {
			if err == nil {
				t.Fatalf("stream %q: unexpected record %+v", stream, rec)
			}
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], want) {
			t.Errorf("stream %q: errors %v, want one matching %v", stream, errs, want)
		}
	}
}

func TestReadAllSkipsSystemEventsAndTheBoundary(t *testing.T) {
	f := &fakeServer{onRead: func(_ int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		for _, r := range []*api.ReadResp{
			fakeEvent("cart-1", 0, 500, 500, "cart.opened", []byte(`{}`), nil), // the position read from: already seen
			fakeEvent("$$cart-1", 0, 600, 600, "$metadata", []byte(`{}`), nil),
			fakeEvent("cart-1", 1, 700, 700, "$streamDeleted", nil, nil),
			fakeEvent("$stats-1", 3, 750, 750, "statsCollected", nil, nil),
			fakeEvent("cart-2", 0, 800, 800, "cart.opened", []byte(`{}`), nil),
		} {
			if err := srv.Send(r); err != nil {
				return err
			}
		}
		return nil
	}}
	s := startFake(t, f, "")
	var got []eventstore.Position
	for rec, err := range s.ReadAll(t.Context(), eventstore.Position{Commit: 500, Prepare: 500}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Position)
	}
	if want := []eventstore.Position{{Commit: 800, Prepare: 800}}; !slices.Equal(got, want) {
		t.Fatalf("positions = %v, want %v", got, want)
	}
	pos := f.read(t, 0).GetOptions().GetAll().GetPosition()
	if pos.GetCommitPosition() != 500 || pos.GetPreparePosition() != 500 {
		t.Errorf("read $all from %v, want 500/500", pos)
	}
}

func TestHeadSkipsSystemEvents(t *testing.T) {
	f := &fakeServer{onRead: func(_ int, req *api.ReadReq, srv api.Streams_ReadServer) error {
		if req.GetOptions().GetReadDirection() != api.ReadReq_Options_Backwards {
			return status.Error(codes.InvalidArgument, "want a backwards read")
		}
		for _, r := range []*api.ReadResp{
			fakeEvent("$stats-1", 3, 900, 900, "$statsCollected", nil, nil),
			fakeEvent("cart-2", 0, 800, 800, "cart.opened", []byte(`{}`), nil),
			fakeEvent("cart-1", 0, 500, 500, "cart.opened", []byte(`{}`), nil),
		} {
			if err := srv.Send(r); err != nil {
				return nil // the store stops reading at the first user event
			}
		}
		return nil
	}}
	s := startFake(t, f, "")
	head, err := s.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (eventstore.Position{Commit: 800, Prepare: 800}); head != want {
		t.Fatalf("head = %v, want %v", head, want)
	}
}

func TestDeadlineExceededIsUnavailable(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
		return nil, status.Error(codes.DeadlineExceeded, "slow server")
	}}
	s := startFake(t, f, "")
	_, err := s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "t"})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// TestUnreachableServer checks that the first operation on a server that
// refuses connections fails with ErrUnavailable once the client's discovery
// gives up, instead of hanging; the test's deadline is far above the client's
// ten attempts 100ms apart, so only the client can end it.
func TestUnreachableServer(t *testing.T) {
	s, err := Open(t.Context(), Config{URL: "esdb://127.0.0.1:1?tls=false", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err = s.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "t"})
	if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append: err = %v, want ErrUnavailable from the client, not the deadline", err)
	}
	// The failed client is replaced: the next operation tries again and fails
	// the same way rather than with "connection is closed" for ever.
	if err := s.Ping(ctx); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ping: err = %v, want ErrUnavailable", err)
	}
	for _, err := range s.ReadAll(ctx, eventstore.Start) {
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("read all: err = %v, want ErrUnavailable", err)
		}
	}
}

// TestUnreachableServerBoundByContext checks that a caller's deadline bounds
// the wait for a connection the client is still trying to make.
func TestUnreachableServerBoundByContext(t *testing.T) {
	s, err := Open(t.Context(), Config{
		URL:    "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=40&discoveryInterval=25",
		Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = s.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "t"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = s.Ping(ctx)
	if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestClosedStore(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) { return successReply(0, 10, 10), nil }}
	s := startFake(t, f, "")
	if _, err := s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "t"}); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("append: %v", err)
	}
	if _, err := s.Head(t.Context()); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("head: %v", err)
	}
	for _, seq := range []func(yield func(eventstore.Record, error) bool){
		s.ReadStream(t.Context(), "s", 1), s.ReadAll(t.Context(), eventstore.Start), s.Subscribe(t.Context(), eventstore.Start),
	} {
		n := 0
		for _, err := range seq {
			n++
			if !errors.Is(err, eventstore.ErrClosed) {
				t.Errorf("iterator: %v", err)
			}
		}
		if n != 1 {
			t.Errorf("iterator yielded %d times after Close, want 1", n)
		}
	}
}

func TestAppendRefusesReservedTypes(t *testing.T) {
	s, err := Open(t.Context(), Config{URL: "esdb://127.0.0.1:1?tls=false", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "$metadata"})
	if !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("err = %v, want ErrInvalidEvent", err)
	}
	_, err = s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "big", Data: make([]byte, DefaultMaxEventSize+1)})
	if !errors.Is(err, eventstore.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	_, err = s.Append(t.Context(), "$all", eventstore.Any, eventstore.Event{Type: "t"})
	if !errors.Is(err, eventstore.ErrInvalidStreamID) {
		t.Fatalf("err = %v, want ErrInvalidStreamID", err)
	}
}

func TestStreamPrefix(t *testing.T) {
	const prefix = "tenant-a-"
	f := &fakeServer{
		onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) { return successReply(0, 10, 10), nil },
		onRead: func(n int, req *api.ReadReq, srv api.Streams_ReadServer) error {
			if req.GetOptions().GetSubscription() != nil {
				if err := confirm(srv); err != nil {
					return err
				}
			}
			for _, r := range []*api.ReadResp{
				fakeEvent("tenant-b-cart-1", 0, 10, 10, "cart.opened", []byte(`{}`), nil),
				fakeEvent(prefix+"cart-1", 0, 20, 20, "cart.opened", []byte(`{}`), nil),
				fakeEvent(prefix+"cart-1", 1, 30, 30, "$streamDeleted", nil, nil),
			} {
				if err := srv.Send(r); err != nil {
					return err
				}
			}
			if req.GetOptions().GetSubscription() != nil {
				<-srv.Context().Done()
			}
			return nil
		},
	}
	s, err := Open(t.Context(), Config{URL: "esdb://" + serveFake(t, f) + "?tls=false", StreamPrefix: prefix, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	res, err := s.Append(t.Context(), "cart-1", eventstore.Any, eventstore.Event{Type: "t"})
	if err != nil || res.StreamID != "cart-1" {
		t.Fatalf("append = %+v, %v", res, err)
	}
	if name := string(f.lastAppend(t).options.GetStreamIdentifier().GetStreamName()); name != prefix+"cart-1" {
		t.Errorf("appended to server stream %q, want %q", name, prefix+"cart-1")
	}
	var all []eventstore.Record
	for rec, err := range s.ReadAll(t.Context(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rec)
	}
	if len(all) != 1 || all[0].StreamID != "cart-1" || all[0].Position != seq(20) {
		t.Fatalf("ReadAll = %+v, want only cart-1 at 20", all)
	}
	for rec, err := range s.Subscribe(t.Context(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.StreamID != "cart-1" || rec.Position != seq(20) {
			t.Fatalf("subscription yielded %+v, want cart-1 at 20", rec)
		}
		break
	}
	var filter *api.ReadReq_Options_FilterOptions
	for i := 0; filter == nil; i++ {
		filter = f.read(t, i).GetOptions().GetFilter()
	}
	if got := filter.GetStreamIdentifier().GetPrefix(); !slices.Equal(got, []string{prefix}) {
		t.Errorf("subscription filter = %v, want the stream prefix %q on the server", filter, prefix)
	}
}

func TestAppendAboveServerLimit(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
		return nil, status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded.")
	}}
	s := startFake(t, f, "")
	_, err := s.Append(t.Context(), "s", eventstore.Any, eventstore.Event{Type: "t", Data: []byte("x")})
	if !errors.Is(err, eventstore.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestReconnectionWaitsForOperationsInFlight checks the gate around the
// client's connection loop: after a call fails with "unavailable", no new
// operation enters the client until those inside it have left and the
// connection has been probed again; then operations resume.
func TestReconnectionWaitsForOperationsInFlight(t *testing.T) {
	release := make(chan struct{})
	inside := make(chan struct{})
	f := &fakeServer{onAppend: func(_ context.Context, a fakeAppend) (*api.AppendResp, error) {
		switch a.events[0].GetMetadata()["type"] {
		case "slow":
			close(inside)
			<-release
		case "refused":
			return nil, status.Error(codes.Unavailable, "node going down")
		}
		return successReply(0, 10, 10), nil
	}}
	s := startFake(t, f, "")
	slow := make(chan error, 1)
	go func() {
		_, err := s.Append(t.Context(), "a", eventstore.Any, eventstore.Event{Type: "slow"})
		slow <- err
	}()
	<-inside
	if _, err := s.Append(t.Context(), "b", eventstore.Any, eventstore.Event{Type: "refused"}); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("refused append: %v, want ErrUnavailable", err)
	}
	// The slow append is still inside the client: a new operation must wait
	// for the reconnection probe, which waits for the slow append.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Append(ctx, "c", eventstore.Any, eventstore.Event{Type: "waits"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append during the reconnection: %v, want its deadline", err)
	}
	f.mu.Lock()
	seen := len(f.appends)
	f.mu.Unlock()
	if seen != 2 {
		t.Fatalf("the server received %d appends while the reconnection waited, want 2", seen)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("slow append: %v", err)
	}
	if _, err := s.Append(t.Context(), "d", eventstore.Any, eventstore.Event{Type: "after"}); err != nil {
		t.Fatalf("append after the reconnection: %v", err)
	}
	if got := string(f.lastAppend(t).options.GetStreamIdentifier().GetStreamName()); got != "d" {
		t.Fatalf("last append on the server is to %q, want d", got)
	}
}

// TestAppendReportsRepeats: the server answers a repeat as the write it
// repeats, so the store reads back appends whose ids are all the caller's and
// reports Repeated when the stream holds other events under those ids.
func TestAppendReportsRepeats(t *testing.T) {
	for _, tc := range []struct {
		name     string
		change   func(i int, ev *api.ReadResp_ReadEvent_RecordedEvent)
		repeated bool
	}{
		{"as sent", nil, false},
		{"other data", func(i int, ev *api.ReadResp_ReadEvent_RecordedEvent) {
			if i == 1 {
				ev.Data = []byte(`{"amount":500}`)
			}
		}, true},
		{"other metadata", func(i int, ev *api.ReadResp_ReadEvent_RecordedEvent) {
			ev.CustomMetadata = []byte(`{"headers":{"eventline.command_hash":"other"}}`)
		}, true},
		{"other type", func(i int, ev *api.ReadResp_ReadEvent_RecordedEvent) {
			if i == 0 {
				ev.Metadata["type"] = "account.withdrawn"
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
				return successReply(2, 700, 700), nil
			}}
			f.onRead = echoRead(f, 1, 700, tc.change)
			s := startFake(t, f, "")
			res, err := s.Append(t.Context(), "account-1", eventstore.Exact(1),
				eventstore.Event{ID: uuid.New(), Type: "account.deposited", Data: []byte(`{"amount":5}`),
					Metadata: eventstore.Metadata{Headers: map[string]string{"eventline.command_hash": "h"}}},
				eventstore.Event{ID: uuid.New(), Type: "account.noted", Data: []byte(`{}`)})
			want := eventstore.AppendResult{StreamID: "account-1", FirstVersion: 2, LastVersion: 3,
				Position: eventstore.Position{Commit: 700, Prepare: 700}, Repeated: tc.repeated}
			if err != nil || res != want {
				t.Fatalf("Append = %+v, %v; want %+v", res, err, want)
			}
			read := f.read(t, 0)
			if rev, ok := read.GetOptions().GetStream().GetRevisionOption().(*api.ReadReq_Options_StreamOptions_Revision); !ok || rev.Revision != 1 {
				t.Errorf("read back from %#v, want revision 1 (version 2)", read.GetOptions().GetStream().GetRevisionOption())
			}
			if n := read.GetOptions().GetCount(); n != 2 {
				t.Errorf("read back %d events, want the 2 appended", n)
			}
		})
	}
}

// An append with ids the store chose cannot be a repeat: no read back when
// the server gives a position, only the position's read back when it does not.
func TestAppendWithStoreIDsIsNotReadBack(t *testing.T) {
	f := &fakeServer{onAppend: func(context.Context, fakeAppend) (*api.AppendResp, error) {
		return successReply(0, 300, 300), nil
	}}
	s := startFake(t, f, "")
	res, err := s.Append(t.Context(), "s", eventstore.NoStream, eventstore.Event{Type: "t"})
	if err != nil || res.Repeated || res.Position != (eventstore.Position{Commit: 300, Prepare: 300}) {
		t.Fatalf("Append = %+v, %v", res, err)
	}
	f.mu.Lock()
	reads := len(f.reads)
	f.mu.Unlock()
	if reads != 0 {
		t.Fatalf("%d reads after an append of store-chosen ids with a position, want 0", reads)
	}

	// No position in the reply: the events are read back for it.
	f.mu.Lock()
	f.onAppend = func(context.Context, fakeAppend) (*api.AppendResp, error) {
		return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
			CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: 0},
			PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
		}}}, nil
	}
	f.onRead = echoRead(f, 0, 400, nil)
	f.mu.Unlock()
	res, err = s.Append(t.Context(), "s2", eventstore.NoStream, eventstore.Event{Type: "t"})
	want := eventstore.AppendResult{StreamID: "s2", FirstVersion: 1, LastVersion: 1, Position: eventstore.Position{Commit: 400, Prepare: 400}}
	if err != nil || res != want {
		t.Fatalf("Append without a position in the reply = %+v, %v; want %+v", res, err, want)
	}
}
