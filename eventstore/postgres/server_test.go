package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The tests run on a real PostgreSQL: the server named by
// EVENTLINE_POSTGRES_URL, else the one on 127.0.0.1:5432 when it answers,
// else a private server they start with Debian's initdb and pg_ctl. Each run
// creates databases with random names and drops them.
const (
	envURL     = "EVENTLINE_POSTGRES_URL"
	envRequire = "EVENTLINE_REQUIRE_POSTGRES"
	localURL   = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	pgBin      = "/usr/lib/postgresql/15/bin"
)

var shared struct {
	once    sync.Once
	url     string // the maintenance database of the server tests use
	err     error
	private *pgServer // started by the tests, stopped by TestMain
}

// sharedServer returns the URL of the server for tests that do not restart
// it, or skips the test when there is none (failing it instead when
// EVENTLINE_REQUIRE_POSTGRES is set).
func sharedServer(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv(envURL); u != "" {
			shared.url, shared.err = u, ping(u)
			return
		}
		if ping(localURL) == nil {
			shared.url = localURL
			return
		}
		srv, err := startServer(os.TempDir())
		if err != nil {
			shared.err = err
			return
		}
		shared.private, shared.url = srv, srv.url("postgres")
	})
	if shared.err != nil {
		noServer(t, shared.err)
	}
	return shared.url
}

func noServer(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(envRequire) != "" {
		t.Fatalf("no PostgreSQL server (%s is set): %v", envRequire, err)
	}
	t.Skipf("no PostgreSQL server: %v", err)
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

// newDatabase creates a database with a random name on the server of
// serverURL and returns its URL; the test's cleanup drops it.
func newDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	name := "eventline_test_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", serverURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, serverURL, name) })
	return withDatabase(serverURL, name)
}

func dropDatabase(t testing.TB, serverURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Errorf("drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("drop database %s: %v", name, err)
	}
}

// withDatabase returns serverURL naming database name instead.
func withDatabase(serverURL, name string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		panic(err) // the tests' own URLs
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// pgServer is a private PostgreSQL server in a temporary directory, for tests
// that stop or restart it (never the shared one).
type pgServer struct {
	dir  string
	port int
}

// startServer runs initdb and pg_ctl start in a new directory under parent,
// on a free port. As root it runs them as the postgres user, which owns the
// directory.
func startServer(parent string) (*pgServer, error) {
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		return nil, fmt.Errorf("no initdb: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "eventline-pg-")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	srv := &pgServer{dir: dir, port: freePort()}
	if out, err := srv.run("initdb", "-D", srv.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := srv.start(); err != nil {
		return nil, err
	}
	return srv, nil
}

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// run runs a server binary, as the postgres user when root.
func (s *pgServer) run(bin string, args ...string) ([]byte, error) {
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

func (s *pgServer) options() string {
	return fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", s.port, s.dir)
}

func (s *pgServer) start() error {
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-o", s.options(), "-w", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// restart restarts the server the way an operator would: fast shutdown,
// which ends every session, then start.
func (s *pgServer) restart() error {
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-o", s.options(), "-m", "fast", "-w", "restart"); err != nil {
		return fmt.Errorf("pg_ctl restart: %v: %s", err, out)
	}
	return nil
}

func (s *pgServer) stop() error {
	_, err := s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	return errors.Join(err, os.RemoveAll(s.dir))
}

// freePort returns a TCP port that was free a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
