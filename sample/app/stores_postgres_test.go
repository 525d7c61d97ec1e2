package app

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// TestPostgresStoreSettingErrors checks that a PostgreSQL URL that cannot be
// used (a database or role that does not exist, a malformed URL) stops a role
// with one line naming EVENTLINE_STORE_URL, which the cart command turns into
// exit status 2. It needs a PostgreSQL server (see internal/pgtest).
func TestPostgresStoreSettingErrors(t *testing.T) {
	server := pgtest.ServerURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	noRole, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	noRole.User = url.UserPassword("eventline_no_such_role", "secret")
	for _, c := range []struct{ url, want string }{
		{pgtest.WithDatabase(t, server, "eventline_no_such_db"), `database "eventline_no_such_db" does not exist`},
		{noRole.String(), `role "eventline_no_such_role" does not exist`},
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
