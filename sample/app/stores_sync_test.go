package app

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// TestSQLiteStoreURLSync: a plain path and a sqlite: URL without settings give
// the durable default; sync=normal is the explicit choice; anything else is a
// setting error naming the store's variable.
func TestSQLiteStoreURLSync(t *testing.T) {
	for in, want := range map[string]storeSpec{
		"./data/events.db":                      {sqlitePath: "./data/events.db", sqliteSync: sqlite.SyncFull},
		"sqlite://data/events.db":               {sqlitePath: "data/events.db", sqliteSync: sqlite.SyncFull},
		"sqlite:///var/lib/events.db?sync=full": {sqlitePath: "/var/lib/events.db", sqliteSync: sqlite.SyncFull},
		"sqlite:data/events.db?sync=normal":     {sqlitePath: "data/events.db", sqliteSync: sqlite.SyncNormal},
		"sqlite://data/events.db?sync=NORMAL":   {sqlitePath: "data/events.db", sqliteSync: sqlite.SyncNormal},
	} {
		got, err := parseStoreURL(in)
		if err != nil || got != want {
			t.Errorf("parseStoreURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"sqlite://", "sqlite:?sync=normal", "sqlite://x.db?sync=off", "sqlite://x.db?mode=ro", "sqlite://x.db?sync=%zz"} {
		_, err := parseStoreURL(in)
		var se *SettingError
		if !errors.As(err, &se) || se.Env != EnvStoreURL {
			t.Errorf("parseStoreURL(%q): %v, want a SettingError for %s", in, err, EnvStoreURL)
		}
	}
}

// TestOpenStoreSyncNormal opens a store from a sqlite: URL with sync=normal
// and checks that the store got the mode and works.
func TestOpenStoreSyncNormal(t *testing.T) {
	ctx := context.Background()
	st, err := OpenStore(ctx, "sqlite://"+filepath.Join(t.TempDir(), "events.db")+"?sync=normal", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s, ok := st.(*sqlite.Store); !ok || s.Sync() != sqlite.SyncNormal {
		t.Fatalf("opened %T, want a *sqlite.Store with SyncNormal", st)
	}
	if _, err := st.Append(ctx, "s", eventstore.NoStream, eventstore.Event{Type: "t", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}
