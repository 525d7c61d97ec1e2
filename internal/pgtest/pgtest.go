// Package pgtest gives tests a fresh PostgreSQL database.
//
// Which server a test gets:
//
//   - EVENTLINE_POSTGRES_URL set: that server, as it is.
//   - otherwise the one on 127.0.0.1:5432 (trust auth, user postgres) when it
//     answers.
//   - otherwise a private server started once per test binary with initdb and
//     pg_ctl in a temporary directory; Run stops it.
//
// With none of these the test is skipped, or fails when
// EVENTLINE_REQUIRE_POSTGRES is set (as .ci/run does), so CI never silently
// tests nothing. Every database Database makes has a random name and is
// dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/freeport"
	"github.com/jackc/pgx/v5"
)

// Environment variables that choose the server.
const (
	EnvURL     = "EVENTLINE_POSTGRES_URL"
	EnvRequire = "EVENTLINE_REQUIRE_POSTGRES"
)

const (
	localURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	pgBin    = "/usr/lib/postgresql/15/bin"
)

var shared struct {
	once    sync.Once
	url     string // the maintenance database of the server tests use
	err     error
	private *Private // started here, stopped by Run
}

// Run runs the tests of m and then stops the private server, if one was
// started; call it from TestMain as os.Exit(pgtest.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	if shared.private != nil {
		shared.private.stop()
	}
	return code
}

// ServerURL returns the URL of the maintenance database of the server tests
// share, or skips the test when there is none (failing it instead when
// EVENTLINE_REQUIRE_POSTGRES is set). Tests must not restart this server.
func ServerURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			shared.url, shared.err = u, ping(u)
			return
		}
		if ping(localURL) == nil {
			shared.url = localURL
			return
		}
		srv, err := startPrivate()
		if err != nil {
			shared.err = err
			return
		}
		shared.private, shared.url = srv, srv.URL("postgres")
	})
	if shared.err != nil {
		noServer(t, shared.err)
	}
	return shared.url
}

// Database creates a database with a random name on the shared server and
// returns its URL; it is dropped when the test ends.
func Database(t testing.TB) string {
	t.Helper()
	return NewDatabase(t, ServerURL(t))
}

// NewDatabase creates a database with a random name on the server of
// serverURL and returns its URL; it is dropped (with its sessions) when the
// test ends.
func NewDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	name := "eventline_test_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", serverURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, serverURL, name) })
	return WithDatabase(t, serverURL, name)
}

// WithDatabase returns serverURL naming database name instead.
func WithDatabase(t testing.TB, serverURL, name string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func dropDatabase(t testing.TB, serverURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

func noServer(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(EnvRequire) != "" {
		t.Fatalf("pgtest: no PostgreSQL server (%s is set): %v", EnvRequire, err)
	}
	t.Skipf("pgtest: no PostgreSQL server: %v", err)
}

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Private is a PostgreSQL server of one test's own, for tests that restart or
// stop it (never the shared one).
type Private struct {
	dir  string
	port int
}

// StartPrivate starts a private server, stopped and removed when the test
// ends. It skips or fails the test as ServerURL does when it cannot.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	srv, err := startPrivate()
	if err != nil {
		noServer(t, err)
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Logf("pgtest: stop private server: %v", err)
		}
	})
	return srv
}

// startPrivate runs initdb and pg_ctl start in a new directory under the
// system's temporary directory (not t.TempDir(): the postgres user must reach
// it), on a free port. As root it runs them as the postgres user, which owns
// the directory.
func startPrivate() (*Private, error) {
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		return nil, fmt.Errorf("no initdb: %w", err)
	}
	dir, err := os.MkdirTemp("", "eventline-pg-")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.Join(fmt.Errorf("running as root and no postgres user: %w", err), os.RemoveAll(dir))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, errors.Join(err, os.RemoveAll(dir))
		}
	}
	port, err := freeport.Loopback()
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	srv := &Private{dir: dir, port: port}
	if out, err := srv.run("initdb", "-D", srv.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, errors.Join(fmt.Errorf("initdb: %v: %s", err, out), os.RemoveAll(dir))
	}
	if out, err := srv.run("pg_ctl", "-D", srv.data(), "-l", srv.log(), "-o", srv.options(), "-w", "start"); err != nil {
		return nil, errors.Join(fmt.Errorf("pg_ctl start: %v: %s", err, out), os.RemoveAll(dir))
	}
	return srv, nil
}

// URL returns the URL of database db on the server.
func (s *Private) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Restart restarts the server the way an operator would: fast shutdown,
// which ends every session, then start.
func (s *Private) Restart() error {
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", s.log(), "-o", s.options(), "-m", "fast", "-w", "restart"); err != nil {
		return fmt.Errorf("pg_ctl restart: %v: %s", err, out)
	}
	return nil
}

func (s *Private) stop() error {
	_, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	return errors.Join(err, os.RemoveAll(s.dir))
}

func (s *Private) data() string { return filepath.Join(s.dir, "data") }
func (s *Private) log() string  { return filepath.Join(s.dir, "log") }

func (s *Private) options() string {
	return fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", s.port, s.dir)
}

// run runs a server binary, as the postgres user when root.
func (s *Private) run(bin string, args ...string) ([]byte, error) {
	path := filepath.Join(pgBin, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// The server pg_ctl starts must not keep our pipe open (it logs to the
	// -l file); WaitDelay bounds the wait should it do so anyway.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}
