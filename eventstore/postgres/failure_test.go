package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// TestConnectionKilledBeforeCommit kills the writer's backend while its
// transaction waits for COMMIT. The append must fail with
// eventstore.ErrUnavailable (the outcome may be reported unknown), and its
// retry with the same event ids must leave the events in the log exactly
// once.
func TestConnectionKilledBeforeCommit(t *testing.T) {
	db := testDB(t)
	s := openStore(t, db, postgres.Config{Schema: "killed"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	killed := make(chan error, 1)
	first := true
	postgres.SetBeforeCommit(s, func() {
		if !first {
			return
		}
		first = false
		var n int
		err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&n)
		if err == nil && n != 1 {
			err = errors.New("no single transaction waiting for COMMIT")
		}
		killed <- err
	})
	events := []eventstore.Event{{ID: uuid.New(), Type: "a"}, {ID: uuid.New(), Type: "b"}}
	_, err = s.Append(ctx, "k", eventstore.NoStream, events...)
	if kerr := <-killed; kerr != nil {
		t.Fatalf("killing the writer's backend: %v", kerr)
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append whose connection was killed: err = %v, want ErrUnavailable", err)
	}
	t.Logf("append failed with: %v (outcome unknown: %v)", err, errors.Is(err, postgres.ErrOutcomeUnknown))

	res, err := s.Append(ctx, "k", eventstore.NoStream, events...)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if res.FirstVersion != 1 || res.LastVersion != 2 {
		t.Errorf("retry = %+v, want versions 1-2", res)
	}
	again, err := s.Append(ctx, "k", eventstore.NoStream, events...)
	if want := (eventstore.AppendResult{StreamID: "k", FirstVersion: 1, LastVersion: 2, Position: res.Position, Repeated: true}); err != nil || again != want {
		t.Errorf("second retry = %+v, %v; want %+v", again, err, want)
	}
	var recs []eventstore.Record
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 2 || recs[0].ID != events[0].ID || recs[1].ID != events[1].ID {
		t.Errorf("the log holds %d records, want the 2 events once", len(recs))
	}
}

// TestCommitReplyLost loses the reply to a commit that the server received
// and wrote: a proxy between the store and PostgreSQL forwards the writer's
// request that commits, reads the server's answer and closes both
// connections instead of passing it on. The append must fail with
// ErrOutcomeUnknown (also matching eventstore.ErrUnavailable), the events must
// be in the log, and the retry with the same event ids must return the
// original result (Repeated) without writing them twice. It runs on both
// write paths: the one-statement path of appends with an exact expected
// version, whose one request commits, and the path that reads first (an
// append expecting Any), whose second request commits.
func TestCommitReplyLost(t *testing.T) {
	for _, tc := range []struct {
		name            string
		first, expected eventstore.ExpectedVersion
		skip            int // requests of the append forwarded before the one that commits
	}{
		{"one statement", eventstore.NoStream, eventstore.Exact(1), 0},
		{"reads first", eventstore.Any, eventstore.Any, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := testDB(t)
			proxy := newReplyLosingProxy(t, db)
			s := openStore(t, proxy.url, postgres.Config{Schema: "replylost"})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()

			// The first append connects the writer and prepares the
			// statements of its path, so that each request of the next one
			// is a single write from the writer to the server.
			first, err := s.Append(ctx, "lost", tc.first, eventstore.Event{ID: uuid.New(), Type: "a"})
			if err != nil {
				t.Fatal(err)
			}
			events := []eventstore.Event{{ID: uuid.New(), Type: "b"}, {ID: uuid.New(), Type: "c"}}
			proxy.arm(tc.skip)
			_, err = s.Append(ctx, "lost", tc.expected, events...)
			select {
			case <-proxy.dropped:
			case <-ctx.Done():
				t.Fatal("the proxy never dropped a reply")
			}
			if !errors.Is(err, postgres.ErrOutcomeUnknown) || !errors.Is(err, eventstore.ErrUnavailable) {
				t.Fatalf("append whose reply was lost: err = %v, want ErrOutcomeUnknown and ErrUnavailable", err)
			}

			// The commit happened: the events are in the table.
			direct, err := pgx.Connect(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close(context.Background())
			var n int
			ids := [][16]byte{events[0].ID, events[1].ID}
			if err := direct.QueryRow(ctx, "SELECT count(*) FROM replylost.events WHERE id = ANY($1)", ids).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("%d of the 2 events are in the table; the proxy was meant to lose the reply of a commit that happened", n)
			}

			want := eventstore.AppendResult{StreamID: "lost", FirstVersion: 2, LastVersion: 3,
				Position: eventstore.SeqPosition(first.Position.Commit + 2), Repeated: true}
			for _, expected := range []eventstore.ExpectedVersion{eventstore.Exact(1), eventstore.Any} {
				res, err := s.Append(ctx, "lost", expected, events...)
				if err != nil || res != want {
					t.Errorf("retry expecting %v = %+v, %v; want %+v", expected, res, err, want)
				}
			}
			var recs []eventstore.Record
			for rec, err := range s.ReadAll(ctx, eventstore.Start) {
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, rec)
			}
			if len(recs) != 3 || recs[1].ID != events[0].ID || recs[2].ID != events[1].ID {
				t.Errorf("the log holds %d records, want the first event and the 2 others once", len(recs))
			}
		})
	}
}

// replyLosingProxy forwards loopback TCP connections to a PostgreSQL server.
// Once armed, it forwards the requests a client sends (pgxpool's liveness
// pings are not counted); after the first skip ones it reads the server's
// first reply and closes both connections without passing it on.
type replyLosingProxy struct {
	url     string
	target  string
	armed   atomic.Bool
	skip    atomic.Int64
	dropped chan struct{}
	once    sync.Once
}

func newReplyLosingProxy(t *testing.T, dbURL string) *replyLosingProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("the database URL %q is not a postgres:// URL with a host: %v", dbURL, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyLosingProxy{target: u.Host, dropped: make(chan struct{})}
	u.Host = ln.Addr().String()
	p.url = u.String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			var losing atomic.Bool
			wg.Go(func() { // client → server
				defer server.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := client.Read(buf)
					if n > 0 {
						if !bytes.Contains(buf[:n], []byte("-- ping")) && p.armed.Load() && p.skip.Add(-1) < 0 &&
							p.armed.CompareAndSwap(true, false) {
							losing.Store(true)
						}
						if _, werr := server.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
			wg.Go(func() { // server → client
				defer client.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := server.Read(buf)
					if n > 0 && losing.Load() {
						server.Close()
						p.once.Do(func() { close(p.dropped) })
						return
					}
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return p
}

// arm makes the proxy lose the reply to the request after the next skip.
func (p *replyLosingProxy) arm(skip int) {
	p.skip.Store(int64(skip))
	p.armed.Store(true)
}
