package app

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresStoreSettingErrors checks that a PostgreSQL URL that cannot be
// used (a database or role that does not exist, a malformed URL) stops a role
// with one line naming EVENTLINE_STORE_URL, which the cart command turns into
// exit status 2. It needs the server on 127.0.0.1:5432.
func TestPostgresStoreSettingErrors(t *testing.T) {
	const server = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		if os.Getenv("EVENTLINE_REQUIRE_POSTGRES") != "" {
			t.Fatalf("no PostgreSQL on 127.0.0.1:5432: %v", err)
		}
		t.Skipf("no PostgreSQL on 127.0.0.1:5432: %v", err)
	}
	conn.Close(ctx)
	for _, c := range []struct{ url, want string }{
		{"postgres://postgres@127.0.0.1:5432/eventline_no_such_db?sslmode=disable", `database "eventline_no_such_db" does not exist`},
		{"postgres://eventline_no_such_role:secret@127.0.0.1:5432/postgres?sslmode=disable", `role "eventline_no_such_role" does not exist`},
		{"postgres://a b@127.0.0.1:5432/x", "not a usable PostgreSQL URL"},
	} {
		err := run(ctx, RoleCommandAPI, Config{StoreURL: c.url, Addr: "127.0.0.1:0"}, parts{})
		se, ok := errors.AsType[*SettingError](err)
		if !ok || se.Env != EnvStoreURL {
			t.Errorf("%s: error %v, want a SettingError naming %s", c.url, err, EnvStoreURL)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) || strings.Contains(msg, "secret") {
			t.Errorf("%s: error %q: want one line saying %q, without the password", c.url, msg, c.want)
		}
	}
}
