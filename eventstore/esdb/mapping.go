package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/eventline/eventline/eventstore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toPosition maps a $all position to an eventstore.Position, field by field.
func toPosition(p esdb.Position) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// fromPosition maps an eventstore.Position to where a read or subscription of
// $all starts. Start is the client's Start, not position 0/0, so that no
// assumption is made about the first record's place in the log.
func fromPosition(p eventstore.Position) esdb.AllPosition {
	if p.IsZero() {
		return esdb.Start{}
	}
	return esdb.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// expectedRevision maps an expected version to the client's: versions count
// events from 1, revisions number them from 0, so Exact(n) expects revision n-1.
func expectedRevision(e eventstore.ExpectedVersion) esdb.ExpectedRevision {
	if v, ok := e.Exact(); ok {
		return esdb.Revision(v - 1)
	}
	switch {
	case e.IsNoStream():
		return esdb.NoStream{}
	case e.IsStreamExists():
		return esdb.StreamExists{}
	default:
		return esdb.Any{}
	}
}

// encodeMetadata stores an event's Metadata as the event's metadata bytes:
// the JSON object {"correlation_id":…,"causation_id":…,"headers":{…}} with empty
// fields left out, or no bytes at all when the Metadata is empty.
func encodeMetadata(m eventstore.Metadata) ([]byte, error) {
	if m.CorrelationID == "" && m.CausationID == "" && len(m.Headers) == 0 {
		return nil, nil
	}
	return json.Marshal(m)
}

// decodeMetadata reads metadata bytes written by encodeMetadata. Other writers
// share the server, so bytes that are not that JSON shape are not an error: the
// record keeps empty Metadata.
func decodeMetadata(b []byte) eventstore.Metadata {
	var m eventstore.Metadata
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return eventstore.Metadata{}
	}
	return m
}

// contentType marks data as JSON when it is valid JSON, so that server-side
// projections and the web UI can read it, and as binary otherwise (including
// empty data, which is not a JSON document).
func contentType(data []byte) esdb.ContentType {
	if len(data) > 0 && json.Valid(data) {
		return esdb.ContentTypeJson
	}
	return esdb.ContentTypeBinary
}

// toEventData maps an event (already given an id by PrepareAppend) to what the
// client appends. The id is passed through, so the server's idempotence applies.
func toEventData(e eventstore.Event) (esdb.EventData, error) {
	meta, err := encodeMetadata(e.Metadata)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("%w: metadata of %s: %w", eventstore.ErrInvalidEvent, e.Type, err)
	}
	return esdb.EventData{
		EventID:     e.ID,
		EventType:   e.Type,
		ContentType: contentType(e.Data),
		Data:        e.Data,
		Metadata:    meta,
	}, nil
}

// toRecord maps a recorded event to a Record: version = revision+1, position
// = the event's $all commit/prepare pair.
func toRecord(ev *esdb.RecordedEvent) eventstore.Record {
	data := ev.Data
	if len(data) == 0 {
		data = nil
	}
	return eventstore.Record{
		Event: eventstore.Event{
			ID:       ev.EventID,
			Type:     ev.EventType,
			Data:     data,
			Metadata: decodeMetadata(ev.UserMetadata),
		},
		StreamID:   ev.StreamID,
		Version:    ev.EventNumber + 1,
		Position:   toPosition(ev.Position),
		RecordedAt: ev.CreatedDate.UTC(),
	}
}

// isSystem reports a system event: a '$' type (metadata, tombstones, links,
// projection bookkeeping) or a '$' stream, which eventline never writes.
func isSystem(ev *esdb.RecordedEvent) bool {
	return strings.HasPrefix(ev.EventType, "$") || strings.HasPrefix(ev.StreamID, "$")
}

// wrongVersionRE matches the message the client builds from the server's
// WrongExpectedVersion reply (client.go, AppendToStream).
var wrongVersionRE = regexp.MustCompile(`expecting '([^']*)' but got '([^']*)'`)

// parseWrongVersion returns the stream's version (0: no stream) from the
// client's wrong-expected-version error. The client keeps the server's
// current revision only in that message, so it is read from there; ok is false
// when the message is not in the expected form.
func parseWrongVersion(err error) (actual uint64, ok bool) {
	m := wrongVersionRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	if m[2] == "no_stream" {
		return 0, true
	}
	rev, perr := strconv.ParseUint(m[2], 10, 64)
	if perr != nil {
		return 0, false
	}
	return rev + 1, true
}

// clientCode returns the client's error code, or false for an error the client
// did not classify (raw gRPC errors from reads and subscriptions).
func clientCode(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

// kind is what an error from the client means to the store.
type kind int

const (
	kindOther       kind = iota // unclassified: reported as is
	kindNotFound                // eventstore.ErrStreamNotFound
	kindDeleted                 // eventstore.ErrStreamDeleted
	kindWrongVer                // eventstore.ErrWrongVersion
	kindUnavailable             // eventstore.ErrUnavailable: retrying later may succeed
	kindDenied                  // credentials or ACLs: retrying will not help
	kindClientDead              // the client's connection loop has stopped
	kindTooLarge                // eventstore.ErrTooLarge: above the server's MaxAppendSize
)

// classify maps a client error to its kind.
func classify(err error) kind {
	if code, ok := clientCode(err); ok && code != esdb.ErrorCodeUnknown {
		switch code {
		case esdb.ErrorCodeResourceNotFound:
			return kindNotFound
		case esdb.ErrorCodeStreamDeleted:
			return kindDeleted
		case esdb.ErrorCodeWrongExpectedVersion:
			return kindWrongVer
		case esdb.ErrorUnavailable, esdb.ErrorCodeDeadlineExceeded, esdb.ErrorCodeNotLeader, esdb.ErrorAborted:
			return kindUnavailable
		case esdb.ErrorCodeUnauthenticated, esdb.ErrorCodeAccessDenied:
			return kindDenied
		case esdb.ErrorCodeConnectionClosed:
			return kindClientDead
		}
		return kindOther
	}
	// Reads and subscriptions hand back raw gRPC errors, sometimes wrapped in
	// an Error of unknown code.
	if s, ok := status.FromError(unwrapGRPC(err)); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
			return kindUnavailable
		case codes.Unauthenticated, codes.PermissionDenied:
			return kindDenied
		case codes.NotFound:
			return kindNotFound
		case codes.InvalidArgument:
			// The server's MaxAppendSizeExceeded reply.
			if strings.Contains(s.Message(), "Maximum Append Size") {
				return kindTooLarge
			}
		}
	}
	return kindOther
}

// connectionLost reports an error after which the client's connection must be
// probed again: the client's ErrorUnavailable (on which it resets its own
// connection), a raw gRPC Unavailable, or a client whose loop has stopped.
func connectionLost(err error) bool {
	if code, ok := clientCode(err); ok && code != esdb.ErrorCodeUnknown {
		return code == esdb.ErrorUnavailable || code == esdb.ErrorCodeConnectionClosed
	}
	s, ok := status.FromError(unwrapGRPC(err))
	return ok && s.Code() == codes.Unavailable
}

// unwrapGRPC finds the gRPC status error inside err, if any.
func unwrapGRPC(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(interface{ GRPCStatus() *status.Status }); ok {
			return e
		}
	}
	return err
}

// mapError turns a client error into the store's: the caller's context error
// when ctx has ended (iterators end with it), ErrClosed after Close, else the
// eventstore sentinel for its kind, wrapping the client's error and naming
// what was being done.
func (s *Store) mapError(ctx context.Context, err error, what string) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("esdb: %s: %w", what, ctxErr)
	}
	if s.isClosed() {
		return fmt.Errorf("%w: %s", eventstore.ErrClosed, what)
	}
	var sentinel error
	switch classify(err) {
	case kindNotFound:
		sentinel = eventstore.ErrStreamNotFound
	case kindDeleted:
		sentinel = eventstore.ErrStreamDeleted
	case kindUnavailable, kindClientDead:
		sentinel = eventstore.ErrUnavailable
	case kindTooLarge:
		sentinel = eventstore.ErrTooLarge
	default:
		return fmt.Errorf("esdb: %s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", sentinel, what, err)
}
