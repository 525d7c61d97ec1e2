package esdb

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPositionMapping(t *testing.T) {
	// $all positions in the server's order: single-event appends (commit =
	// prepare, from the client's own test data), then an old explicit
	// transaction whose events share a commit position, then more.
	server := []esdb.Position{
		{Commit: 167, Prepare: 167}, {Commit: 305, Prepare: 305}, {Commit: 1788, Prepare: 1788},
		{Commit: 5000, Prepare: 4000}, {Commit: 5000, Prepare: 4200}, {Commit: 5000, Prepare: 4400},
		{Commit: 5100, Prepare: 5100},
	}
	var mapped []eventstore.Position
	for _, p := range server {
		q := toPosition(p)
		if q.Commit != p.Commit || q.Prepare != p.Prepare {
			t.Fatalf("toPosition(%v) = %v", p, q)
		}
		if back, ok := fromPosition(q).(esdb.Position); !ok || back != p {
			t.Fatalf("fromPosition(%v) = %#v, want %v", q, fromPosition(q), p)
		}
		token := q.String()
		if parsed, err := eventstore.ParsePosition(token); err != nil || parsed != q {
			t.Fatalf("token %q parses to %v, %v", token, parsed, err)
		}
		mapped = append(mapped, q)
	}
	if !slices.IsSortedFunc(mapped, eventstore.Position.Compare) {
		t.Fatalf("mapped positions are not in the server's order: %v", mapped)
	}
	for i := 1; i < len(mapped); i++ {
		if !mapped[i-1].Before(mapped[i]) {
			t.Fatalf("%v is not before %v", mapped[i-1], mapped[i])
		}
	}
	if _, ok := fromPosition(eventstore.Start).(esdb.Start); !ok {
		t.Fatalf("Start maps to %#v, want esdb.Start", fromPosition(eventstore.Start))
	}
}

func TestExpectedRevision(t *testing.T) {
	for _, tc := range []struct {
		in   eventstore.ExpectedVersion
		want esdb.ExpectedRevision
	}{
		{eventstore.Any, esdb.Any{}},
		{eventstore.NoStream, esdb.NoStream{}},
		{eventstore.Exact(0), esdb.NoStream{}},
		{eventstore.StreamExists, esdb.StreamExists{}},
		{eventstore.Exact(1), esdb.Revision(0)},
		{eventstore.Exact(42), esdb.Revision(41)},
	} {
		if got := expectedRevision(tc.in); got != tc.want {
			t.Errorf("expectedRevision(%v) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestMetadataEncoding(t *testing.T) {
	full := eventstore.Metadata{CorrelationID: "corr", CausationID: "cause",
		Headers: map[string]string{"tenant": "acme", "user": "Zoë", "empty": ""}}
	b, err := encodeMetadata(full)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"correlation_id":"corr","causation_id":"cause","headers":{"empty":"","tenant":"acme","user":"Zoë"}}`
	if string(b) != want {
		t.Fatalf("encoded %s, want %s", b, want)
	}
	got := decodeMetadata(b)
	if got.CorrelationID != full.CorrelationID || got.CausationID != full.CausationID || len(got.Headers) != 3 ||
		got.Headers["user"] != "Zoë" || got.Headers["empty"] != "" {
		t.Fatalf("decoded %+v, want %+v", got, full)
	}
	if b, _ := encodeMetadata(eventstore.Metadata{}); b != nil {
		t.Errorf("empty metadata encodes as %q, want no bytes", b)
	}
	if b, _ := encodeMetadata(eventstore.Metadata{CausationID: "c"}); string(b) != `{"causation_id":"c"}` {
		t.Errorf("partial metadata encodes as %s", b)
	}
	for _, foreign := range [][]byte{nil, {}, []byte("not json"), []byte(`[1,2]`), []byte(`{"headers":"x"}`)} {
		if m := decodeMetadata(foreign); m.CorrelationID != "" || m.CausationID != "" || m.Headers != nil {
			t.Errorf("decodeMetadata(%q) = %+v, want empty", foreign, m)
		}
	}
}

func TestContentType(t *testing.T) {
	for data, want := range map[string]esdb.ContentType{
		`{"a":1}`: esdb.ContentTypeJson, `[1]`: esdb.ContentTypeJson, `"s"`: esdb.ContentTypeJson,
		``: esdb.ContentTypeBinary, `{`: esdb.ContentTypeBinary, "\xff\x00": esdb.ContentTypeBinary,
	} {
		if got := contentType([]byte(data)); got != want {
			t.Errorf("contentType(%q) = %v, want %v", data, got, want)
		}
	}
}

func TestToEventDataAndRecord(t *testing.T) {
	id := uuid.New()
	e := eventstore.Event{ID: id, Type: "cart.opened", Data: []byte(`{"id":1}`),
		Metadata: eventstore.Metadata{CorrelationID: "c"}}
	d, err := toEventData(e)
	if err != nil {
		t.Fatal(err)
	}
	if d.EventID != id || d.EventType != e.Type || d.ContentType != esdb.ContentTypeJson ||
		string(d.Data) != string(e.Data) || string(d.Metadata) != `{"correlation_id":"c"}` {
		t.Fatalf("event data = %+v", d)
	}

	created := time.Date(2026, 3, 4, 5, 6, 7, 800, time.UTC)
	rec := toRecord(&esdb.RecordedEvent{
		EventID: id, EventType: d.EventType, StreamID: "cart-1", EventNumber: 0,
		Position: esdb.Position{Commit: 99, Prepare: 98}, CreatedDate: created,
		Data: d.Data, UserMetadata: d.Metadata,
	})
	want := eventstore.Record{Event: e, StreamID: "cart-1", Version: 1,
		Position: eventstore.Position{Commit: 99, Prepare: 98}, RecordedAt: created}
	if rec.ID != want.ID || rec.Type != want.Type || string(rec.Data) != string(want.Data) ||
		rec.Metadata.CorrelationID != "c" || rec.StreamID != want.StreamID || rec.Version != 1 ||
		rec.Position != want.Position || !rec.RecordedAt.Equal(created) {
		t.Fatalf("record = %+v, want %+v", rec, want)
	}
	if empty := toRecord(&esdb.RecordedEvent{Data: []byte{}, EventNumber: 6}); empty.Data != nil || empty.Version != 7 {
		t.Fatalf("empty record = %+v", empty)
	}
}

func TestIsSystem(t *testing.T) {
	for _, tc := range []struct {
		stream, typ string
		want        bool
	}{
		{"cart-1", "cart.opened", false},
		{"cart-1", "$streamDeleted", true},
		{"$$cart-1", "$metadata", true},
		{"$stats-127.0.0.1:2113", "statsCollected", true},
		{"$ce-cart", "$>", true},
	} {
		if got := isSystem(&esdb.RecordedEvent{StreamID: tc.stream, EventType: tc.typ}); got != tc.want {
			t.Errorf("isSystem(%q, %q) = %v", tc.stream, tc.typ, got)
		}
	}
}

func TestParseWrongVersion(t *testing.T) {
	// The message is the one client.go builds from the server's reply.
	msg := func(expected, current string) error {
		return fmt.Errorf("wrong expected version: expecting '%s' but got '%s'", expected, current)
	}
	for _, tc := range []struct {
		err    error
		actual uint64
		ok     bool
	}{
		{msg("2", "6"), 7, true},
		{msg("no_stream", "0"), 1, true},
		{msg("any", "no_stream"), 0, true},
		{msg("stream_exists", "no_stream"), 0, true},
		{errors.New("something else"), 0, false},
		{msg("1", "-1"), 0, false},
	} {
		actual, ok := parseWrongVersion(tc.err)
		if actual != tc.actual || ok != tc.ok {
			t.Errorf("parseWrongVersion(%q) = %d, %v; want %d, %v", tc.err, actual, ok, tc.actual, tc.ok)
		}
	}
}

func TestClassifyClientErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want kind
	}{
		{status.Error(codes.Unavailable, "connection refused"), kindUnavailable},
		{status.Error(codes.DeadlineExceeded, "deadline"), kindUnavailable},
		{fmt.Errorf("failed to perform read: %w", status.Error(codes.Unavailable, "x")), kindUnavailable},
		{clientError(status.Error(codes.Unavailable, "x")), kindUnavailable},
		{closedClientError(t), kindClientDead},
		{status.Error(codes.PermissionDenied, "acl"), kindDenied},
		{status.Error(codes.Unauthenticated, "who"), kindDenied},
		{status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded."), kindTooLarge},
		{status.Error(codes.InvalidArgument, "bad"), kindOther},
		{errors.New("plain"), kindOther},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// clientError wraps err the way the client wraps errors it does not classify.
func clientError(err error) error {
	e, _ := esdb.FromError(err)
	return e
}

// closedClientError is the error a closed client returns.
func closedClientError(t *testing.T) error {
	cfg, err := esdb.ParseConnectionString("esdb://127.0.0.1:1?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, _ := esdb.NewClient(cfg)
	c.Close()
	_, err = c.GetServerVersion()
	if code, ok := clientCode(err); !ok || code != esdb.ErrorCodeConnectionClosed {
		t.Fatalf("closed client error = %v, want ErrorCodeConnectionClosed", err)
	}
	return err
}
