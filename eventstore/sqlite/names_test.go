package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

// TestLogPagesNameStreams reads, through ReadAll and Subscribe on a store
// whose name cache is cold and small, a log whose pages hold streams created
// far apart (an old stream among thousands of new ones, more than a run of
// nameRun ids) as well as runs of new streams, and checks every record's
// stream: the range look-up, the look-up by ids and the cache starting over
// all name records right.
func TestLogPagesNameStreams(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "names.db")
	w, err := Open(ctx, Config{Path: path, Sync: SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	add := func(stream string) {
		t.Helper()
		if _, err := w.Append(ctx, stream, eventstore.Any, eventstore.Event{Type: "t", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, stream)
	}
	add("old")
	for i := range nameRun + 500 {
		add(fmt.Sprintf("new-%d", i))
		if i%700 == 0 {
			add("old")
		}
	}
	add("old")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	for _, limit := range []int{0, 300} {
		s, err := Open(ctx, Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		s.reads.names.max = limit
		check := func(how string, recs func(func(eventstore.Record, error) bool)) {
			t.Helper()
			i := 0
			for rec, err := range recs {
				if err != nil {
					t.Fatalf("%s, cache of %d: %v", how, limit, err)
				}
				if rec.StreamID != want[i] {
					t.Fatalf("%s, cache of %d: record %d (position %s) in stream %q, want %q", how, limit, i, rec.Position, rec.StreamID, want[i])
				}
				if i++; i == len(want) {
					return
				}
			}
			if i != len(want) {
				t.Fatalf("%s, cache of %d: %d records, want %d", how, limit, i, len(want))
			}
		}
		check("ReadAll", s.ReadAll(ctx, eventstore.Position{}))
		sctx, cancel := context.WithCancel(ctx)
		check("Subscribe", s.Subscribe(sctx, eventstore.Position{}))
		cancel()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
