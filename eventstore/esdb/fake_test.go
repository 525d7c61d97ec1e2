package esdb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeServer is a scripted stand-in for EventStoreDB's gRPC Streams service.
// It lets the store's mapping run through the real client (request encoding,
// reply decoding, error construction) without a server: each test scripts
// the replies and inspects the requests.
type fakeServer struct {
	api.UnimplementedStreamsServer

	mu       sync.Mutex
	appends  []fakeAppend
	reads    []*api.ReadReq
	onAppend func(ctx context.Context, a fakeAppend) (*api.AppendResp, error)
	onRead   func(n int, req *api.ReadReq, srv api.Streams_ReadServer) error
}

// fakeAppend is one append request as the server received it.
type fakeAppend struct {
	options *api.AppendReq_Options
	events  []*api.AppendReq_ProposedMessage
}

func (f *fakeServer) Append(srv api.Streams_AppendServer) error {
	head, err := srv.Recv()
	if err != nil {
		return err
	}
	a := fakeAppend{options: head.GetOptions()}
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		a.events = append(a.events, req.GetProposedMessage())
	}
	f.mu.Lock()
	f.appends = append(f.appends, a)
	on := f.onAppend
	f.mu.Unlock()
	resp, err := on(srv.Context(), a)
	if err != nil {
		return err
	}
	return srv.SendAndClose(resp)
}

func (f *fakeServer) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	f.mu.Lock()
	f.reads = append(f.reads, req)
	n := len(f.reads)
	on := f.onRead
	f.mu.Unlock()
	return on(n, req, srv)
}

func (f *fakeServer) lastAppend(t *testing.T) fakeAppend {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.appends) == 0 {
		t.Fatal("the server received no append")
	}
	return f.appends[len(f.appends)-1]
}

func (f *fakeServer) read(t *testing.T, i int) *api.ReadReq {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reads) <= i {
		t.Fatalf("the server received %d reads, want at least %d", len(f.reads), i+1)
	}
	return f.reads[i]
}

// serveFake serves f on a loopback port until the test ends and returns its
// address.
func serveFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	api.RegisterStreamsServer(g, f)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// startFake serves f and returns an open Store on it.
func startFake(t *testing.T, f *fakeServer, settings string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{
		URL:        "esdb://" + serveFake(t, f) + "?tls=false" + settings,
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		Logger:     discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeEvent is a read reply carrying one recorded event.
func fakeEvent(stream string, revision, commit, prepare uint64, typ string, data, meta []byte) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewSHA1(uuid.NameSpaceOID, []byte(stream+strconv.FormatUint(revision, 10))).String()}},
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(stream)},
			StreamRevision:   revision,
			CommitPosition:   commit,
			PreparePosition:  prepare,
			Metadata: map[string]string{
				"type":         typ,
				"content-type": "application/json",
				// .NET ticks (100ns) since the Unix epoch, as the server sends.
				"created": strconv.FormatInt(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()/100, 10),
			},
			CustomMetadata: meta,
			Data:           data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: commit},
	}}}
}

// confirm is the reply that opens a subscription.
func confirm(srv api.Streams_ReadServer) error {
	return srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{
		Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: "fake"},
	}})
}

// streamDeleted fails a call the way the server reports a tombstoned stream.
func streamDeleted(ctx context.Context, stream string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", stream))
	return status.Error(codes.FailedPrecondition, "stream deleted")
}
