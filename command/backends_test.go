package command_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// backend opens an empty store for one test or benchmark, closed by Cleanup.
type backend struct {
	name string
	open func(tb testing.TB) eventstore.Store
}

var backends = []backend{
	{"memory", func(tb testing.TB) eventstore.Store {
		s := memory.New()
		tb.Cleanup(func() { s.Close() })
		return s
	}},
	// The embedded default: a SQLite file, WAL, synchronous=NORMAL.
	{"sqlite", func(tb testing.TB) eventstore.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "events.db")})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			if err := s.Close(); err != nil {
				tb.Error(err)
			}
		})
		return s
	}},
}
