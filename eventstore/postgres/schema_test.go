package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// TestSchema checks that the schema is created on first use and found again,
// that schemas keep applications apart in one database, and that a newer
// schema version or foreign tables are refused with ErrSchemaVersion.
func TestSchema(t *testing.T) {
	db := testDB(t)
	ctx := t.Context()
	a := openStore(t, db, postgres.Config{Schema: "app_a"})
	b := openStore(t, db, postgres.Config{Schema: "app_b"})
	if _, err := a.Append(ctx, "x", eventstore.NoStream, eventstore.Event{Type: "e"}); err != nil {
		t.Fatal(err)
	}
	if head, err := b.Head(ctx); err != nil || !head.IsZero() {
		t.Errorf("another schema's head = %s, %v; want Start", head, err)
	}
	again := openStore(t, db, postgres.Config{Schema: "app_a"})
	if head, err := again.Head(ctx); err != nil || head != eventstore.SeqPosition(1) {
		t.Errorf("reopened head = %s, %v; want 1", head, err)
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		"UPDATE app_b.schema_version SET version = 99",
		"CREATE SCHEMA foreign_app",
		"CREATE TABLE foreign_app.events (id int)",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	for schema, want := range map[string]string{"app_b": "version 99", "foreign_app": "not an eventline store"} {
		_, err := postgres.Open(ctx, postgres.Config{URL: db, Schema: schema})
		if !errors.Is(err, postgres.ErrSchemaVersion) || !strings.Contains(err.Error(), want) {
			t.Errorf("Open of schema %s: %v; want ErrSchemaVersion saying %q", schema, err, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []postgres.Config{
		{},
		{URL: "postgres://x/y", Schema: "Bad-Name"},
		{URL: "postgres://x/y", MaxEventSize: -1},
		{URL: "postgres://x/y", PageSize: -1},
		{URL: "postgres://x/y", PollInterval: -1},
		{URL: "postgres://x/y", CommitTimeout: -1},
		{URL: "postgres://x/y", MaxConns: -1},
		{URL: "postgres://a b@x/y"},
	} {
		if err := c.Validate(); !errors.Is(err, postgres.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	if err := (postgres.Config{URL: "postgres://x/y", Schema: "app_1"}).Validate(); err != nil {
		t.Errorf("Validate of a good config: %v", err)
	}
}
