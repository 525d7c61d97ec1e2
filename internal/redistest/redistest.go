// Package redistest gives tests a Redis server of their own.
//
// Start runs a private redis-server on a free loopback port, in a temporary
// directory, and stops it when the test ends. Which server a test got is logged:
//
//   - EVENTLINE_TEST_REDIS_URL set: that server is used as it is (the test must
//     not depend on its state; use key prefixes of its own).
//   - otherwise a private redis-server (found on PATH) is started.
//   - no redis-server binary: an in-process miniredis, logged as a fallback.
//     EVENTLINE_REQUIRE_REDIS_SERVER=1 (set by .ci/run) turns this into a failure,
//     so CI never silently tests against the fallback.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/eventline/eventline/internal/freeport"
	"github.com/redis/go-redis/v9"
)

// Kinds of server Start can give.
const (
	KindEnv       = "EVENTLINE_TEST_REDIS_URL"
	KindProcess   = "redis-server"
	KindMiniredis = "miniredis (fallback)"
)

// Options shape a private server.
type Options struct {
	// Persistent turns on the append-only file with fsync on every write, so
	// that Kill followed by Restart keeps the data (for crash tests).
	Persistent bool
}

// Server is a Redis server for one test.
type Server struct {
	// Addr is host:port; URL is the same as a redis:// URL.
	Addr, URL string
	// Kind tells which server this is: KindEnv, KindProcess or KindMiniredis.
	Kind string

	t    testing.TB
	opts Options
	dir  string
	// args are extra redis-server arguments (a cluster node's).
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	mini *miniredis.Miniredis
}

// Start returns a running server that is stopped when the test ends.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if u := os.Getenv("EVENTLINE_TEST_REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("redistest: EVENTLINE_TEST_REDIS_URL: %v", err)
		}
		t.Logf("redistest: using %s from EVENTLINE_TEST_REDIS_URL", o.Addr)
		return &Server{Addr: o.Addr, URL: u, Kind: KindEnv, t: t}
	}
	s := &Server{Kind: KindProcess, t: t, opts: opts, dir: t.TempDir()}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("EVENTLINE_REQUIRE_REDIS_SERVER") != "" {
			t.Fatalf("redistest: no redis-server on PATH and EVENTLINE_REQUIRE_REDIS_SERVER is set")
		}
		m := miniredis.RunT(t)
		t.Logf("redistest: no redis-server on PATH; FALLBACK to miniredis at %s", m.Addr())
		return &Server{Addr: m.Addr(), URL: "redis://" + m.Addr(), Kind: KindMiniredis, t: t, mini: m}
	}
	var lastErr error
	for range 5 {
		port, err := freeport.Loopback()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr
		if lastErr = s.launch(bin); lastErr == nil {
			t.Cleanup(s.Kill)
			t.Logf("redistest: started redis-server at %s", s.Addr)
			return s
		}
	}
	t.Fatalf("redistest: cannot start redis-server: %v", lastErr)
	return nil
}

func (s *Server) launch(bin string) error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"--bind", "127.0.0.1", "--port", port, "--dir", s.dir, "--save", "",
		"--daemonize", "no", "--logfile", "redis.log", "--protected-mode", "no"}
	if s.opts.Persistent {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, s.args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(s.dir + "/redis.log")
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, log)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s did not answer PING", s.Addr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill stops the server at once (SIGKILL). It is safe to call more than once.
func (s *Server) Kill() {
	switch s.Kind {
	case KindMiniredis:
		s.mini.Close()
		return
	case KindEnv:
		s.t.Fatalf("redistest: cannot kill a server named by EVENTLINE_TEST_REDIS_URL")
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// alive reports whether the server's process runs (was not killed).
func (s *Server) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Restart starts a killed server again on the same address. With
// Options.Persistent the data written before Kill is still there.
func (s *Server) Restart() {
	s.t.Helper()
	switch s.Kind {
	case KindMiniredis:
		if err := s.mini.Restart(); err != nil {
			s.t.Fatalf("redistest: restart miniredis: %v", err)
		}
		return
	case KindEnv:
		s.t.Fatalf("redistest: cannot restart a server named by EVENTLINE_TEST_REDIS_URL")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	var lastErr error
	// The port may linger briefly after a kill; a few attempts cover that.
	for range 50 {
		if lastErr = s.launch(bin); lastErr == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", lastErr)
}
