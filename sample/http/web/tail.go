package web

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
)

// TailName is the name of the projection that keeps the latest records of
// the log in Redis for the page's live tail.
const TailName = "eventlog"

// TailVersion is the schema version of the eventlog projection.
const TailVersion = 1

// TailLength is about how many records the tail keeps (Redis trims the
// stream approximately, so a few more may stay).
const TailLength = 1000

// MaxTailData is the longest payload excerpt the tail keeps per record, in
// bytes; longer payloads are cut at a rune boundary and marked with "…".
const MaxTailData = 300

// tailKey is the part of the eventlog model's key: a Redis stream.
const tailKey = "tail"

// TailProjection returns the eventlog projection: every record of the log,
// summarised (position, stream, version, type, time, a payload excerpt), is
// appended to a Redis stream capped at about TailLength entries. It is a read
// model like the others, written in the runner's transaction with the
// checkpoint, so the tail the page shows is exactly the log up to the
// projection's checkpoint and never needs the event store.
func TailProjection() projection.Projection {
	return projection.Define(TailName, TailVersion, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().XAdd(ctx, &redis.XAddArgs{
			Stream: tx.Key(tailKey),
			MaxLen: TailLength,
			Approx: true,
			Values: []any{
				"position", rec.Position.String(),
				"stream", rec.StreamID,
				"version", rec.Version,
				"type", rec.Type,
				"at", rec.RecordedAt.UTC().Format(time.RFC3339Nano),
				"data", excerpt(rec.Data, MaxTailData),
			},
		})
		return nil
	})
}

func excerpt(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return strings.ToValidUTF8(string(b[:n]), "\uFFFD") + "…"
}

// TailEntry is one record of the live tail, as the page receives it.
type TailEntry struct {
	// ID is the entry's Redis stream id, the cursor of the tail.
	ID       string `json:"id"`
	Position string `json:"position"`
	Stream   string `json:"stream"`
	Version  string `json:"version"`
	Type     string `json:"type"`
	At       string `json:"at"`
	Data     string `json:"data"`
}

// TailFilter selects tail entries: each non-empty field must be a prefix of
// the entry's stream or type ("cart-" selects every cart).
type TailFilter struct {
	Stream, Type string
}

func (f TailFilter) match(e TailEntry) bool {
	return strings.HasPrefix(e.Stream, f.Stream) && strings.HasPrefix(e.Type, f.Type)
}

// tailReader follows the tail of the active eventlog build for one client.
type tailReader struct {
	rdb    redis.UniversalClient
	filter TailFilter
	key    string // the stream read so far; "" before the first read
	last   string // the last entry id sent
}

// errNoTail means the eventlog projection has no active build yet.
var errNoTail = errors.New("web: the eventlog projection has no active build yet")

// next returns the entries after the last one returned, and reset when the
// tail starts over (first call, or the eventlog projection was rebuilt into
// another key): then it returns up to backlog latest matching entries.
func (t *tailReader) next(ctx context.Context, backlog int) (entries []TailEntry, reset bool, err error) {
	v, err := query.Resolve(ctx, t.rdb, TailName)
	if errors.Is(err, query.ErrNotReady) {
		return nil, false, errNoTail
	}
	if err != nil {
		return nil, false, err
	}
	key := v.Key(tailKey)
	if key != t.key {
		msgs, err := t.rdb.XRevRangeN(ctx, key, "+", "-", TailLength+TailLength/2).Result()
		if err != nil {
			return nil, false, fmt.Errorf("web: read the tail %s: %w", key, err)
		}
		for _, m := range msgs {
			if e := toEntry(m); t.filter.match(e) {
				entries = append(entries, e)
				if len(entries) == backlog {
					break
				}
			}
		}
		for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
			entries[i], entries[j] = entries[j], entries[i]
		}
		t.key, t.last = key, "0-0"
		if len(msgs) > 0 {
			t.last = msgs[0].ID
		}
		return entries, true, nil
	}
	msgs, err := t.rdb.XRangeN(ctx, key, "("+t.last, "+", 500).Result()
	if err != nil {
		return nil, false, fmt.Errorf("web: read the tail %s after %s: %w", key, t.last, err)
	}
	for _, m := range msgs {
		t.last = m.ID
		if e := toEntry(m); t.filter.match(e) {
			entries = append(entries, e)
		}
	}
	return entries, false, nil
}

func toEntry(m redis.XMessage) TailEntry {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	return TailEntry{ID: m.ID, Position: s("position"), Stream: s("stream"), Version: s("version"),
		Type: s("type"), At: s("at"), Data: s("data")}
}
