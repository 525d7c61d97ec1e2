package command

import (
	"context"
	"maps"

	"github.com/eventline/eventline/eventstore"
)

type ctxKey int

const (
	commandIDKey ctxKey = iota
	metadataKey
)

// WithID returns a context whose commands are idempotent under the command id
// key: Handle writes the command's events at most once per stream and returns the
// original Result when the same id is handled again. An HTTP API passes its
// Idempotency-Key header here. The empty key removes the id. Handle rejects keys
// longer than MaxCommandIDLen or holding control characters with ErrInvalidID.
func WithID(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, commandIDKey, key)
}

// IDFrom returns the command id set by WithID, or "".
func IDFrom(ctx context.Context) string {
	key, _ := ctx.Value(commandIDKey).(string)
	return key
}

// WithMetadata returns a context whose handled commands write md onto every
// event they append. Empty fields get defaults at append time: the correlation
// id becomes the command id (or a new UUID when there is none) and the causation
// id becomes the command id. md's headers are copied.
func WithMetadata(ctx context.Context, md eventstore.Metadata) context.Context {
	md.Headers = maps.Clone(md.Headers)
	return context.WithValue(ctx, metadataKey, md)
}

// MetadataFrom returns a copy of the metadata set by WithMetadata or CausedBy,
// or the zero Metadata.
func MetadataFrom(ctx context.Context) eventstore.Metadata {
	md, _ := ctx.Value(metadataKey).(eventstore.Metadata)
	md.Headers = maps.Clone(md.Headers)
	return md
}

// CausedBy returns a context for commands issued in reaction to the recorded
// event rec (by a saga or a process manager): their events carry rec's id as
// causation id and continue rec's correlation id (rec's own id when it has
// none). Headers already in ctx are kept.
//
// CausedBy does not make the command idempotent; for that, also call WithID
// with a key derived from rec.ID, e.g. WithID(ctx, rec.ID.String()+"/reserve").
func CausedBy(ctx context.Context, rec eventstore.Record) context.Context {
	md := MetadataFrom(ctx)
	md.CausationID = rec.ID.String()
	md.CorrelationID = rec.Metadata.CorrelationID
	if md.CorrelationID == "" {
		md.CorrelationID = rec.ID.String()
	}
	return WithMetadata(ctx, md)
}
