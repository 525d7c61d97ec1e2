package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the raw SQLite ceiling uses the driver directly

	"github.com/eventline/eventline/sample/domain/cart"
)

// rawSchema is a table comparable with the event store's: streams mapped to
// integer ids, a unique (stream, version) index and a unique event-id index.
// It is written out here rather than taken from the store (whose schema is
// unexported) so that the ceiling stays "plain SQLite, no eventline".
const rawSchema = `
CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE events (
	position INTEGER PRIMARY KEY, stream INTEGER NOT NULL, version INTEGER NOT NULL,
	id BLOB NOT NULL, type TEXT NOT NULL, recorded_at INTEGER NOT NULL,
	correlation_id TEXT, causation_id TEXT, headers BLOB, data BLOB NOT NULL);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
CREATE UNIQUE INDEX events_id ON events (id);`

// benchData is the payload of synthetic events: the size of a cart item.
var benchData = []byte(`{"product_id":"tea-000123","quantity":2,"unit_price_cents":1250}`)

const benchStreams = 10_000

// sqliteTx100 inserts rows rows into rawSchema with plain database/sql, 100
// rows per transaction, in WAL mode with synchronous set to synchronous
// ("NORMAL" or "FULL") like the store, to random streams out of benchStreams
// with time-ordered ids; it returns rows/s.
func sqliteTx100(ctx context.Context, dir, synchronous string, rows int) (float64, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + synchronous + ")", "cache_size(-32768)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "raw-"+strings.ToLower(synchronous)+".db")+"?"+q.Encode())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, rawSchema); err != nil {
		return 0, fmt.Errorf("raw schema: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	for i := range benchStreams {
		if _, err := tx.ExecContext(ctx, "INSERT INTO streams (id, name) VALUES (?, ?)", i+1, "cart-"+strconv.Itoa(i)); err != nil {
			_ = tx.Rollback()
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	insert, err := db.PrepareContext(ctx, `INSERT INTO events (position, stream, version, id, type, recorded_at,
		correlation_id, causation_id, headers, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, err
	}
	defer insert.Close()
	versions := make([]int64, benchStreams)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for done := 0; done < rows; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		stmt := tx.StmtContext(ctx, insert)
		for k := 0; k < 100 && done < rows; k, done = k+1, done+1 {
			i := rng.IntN(benchStreams)
			versions[i]++
			id, err := uuid.NewV7()
			if err != nil {
				_ = tx.Rollback()
				return 0, err
			}
			if _, err := stmt.ExecContext(ctx, done+1, i+1, versions[i], id[:], "cart.item_added",
				time.Now().UnixNano(), "0b9c2f5e-7d3a-4a51-9f0e-3c1d2b4a5e6f", nil, nil, benchData); err != nil {
				_ = tx.Rollback()
				return 0, err
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}

// syncedWrites overwrites 4 KiB blocks of a preallocated 1 MiB file in dir,
// in turn, for d, each write followed by an fsync (the call SQLite makes to
// sync its WAL), and returns writes/s: the disk's synced writes per second.
// The blocks are overwritten, not appended, because SQLite reuses its WAL file
// from the start once checkpointed, and an fsync after an append also commits
// the file's new size, which costs about twice as much. An append with
// synchronous=FULL waits for one such fsync, so a lone caller commits no
// faster than this.
func syncedWrites(dir string, d time.Duration) (float64, error) {
	const block, blocks = 4096, 256
	f, err := os.Create(filepath.Join(dir, "fsync.bin"))
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, block*blocks)); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	buf := make([]byte, block)
	n := 0
	start := time.Now()
	for n == 0 || time.Since(start) < d {
		if _, err := f.WriteAt(buf, int64(n%blocks)*block); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// redisHSET sends n HSETs in pipelines of 500 on one connection and returns
// ops/s: the ceiling of a projection that writes one field per event.
func redisHSET(ctx context.Context, opts *redis.Options, n int) (float64, error) {
	rdb := oneConn(opts)
	defer rdb.Close()
	start := time.Now()
	for i := 0; i < n; {
		pipe := rdb.Pipeline()
		for j := 0; j < 500 && i < n; j, i = j+1, i+1 {
			pipe.HSet(ctx, "bench:ceiling:"+strconv.Itoa(i%1000), "n", i)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	pipe := rdb.Pipeline()
	for i := range min(n, 1000) {
		pipe.Del(ctx, "bench:ceiling:"+strconv.Itoa(i))
	}
	_, err := pipe.Exec(ctx)
	return rate, err
}

// redisRoundTrip times n sequential GETs on one connection.
func redisRoundTrip(ctx context.Context, opts *redis.Options, n int) (loopResult, error) {
	rdb := oneConn(opts)
	defer rdb.Close()
	if err := rdb.Set(ctx, "bench:rtt", "x", 0).Err(); err != nil {
		return loopResult{}, err
	}
	res := runClients(ctx, 1, func(ctx context.Context, _ int, rec func(time.Duration, error)) {
		for range n {
			t0 := time.Now()
			err := rdb.Get(ctx, "bench:rtt").Err()
			rec(time.Since(t0), err)
		}
	})
	return res, res.firstErr
}

// trivialJSON is the ceiling handler: it answers every GET with a small JSON
// document, the size of a cart.
func trivialJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"cart_id": r.PathValue("id"), "status": "open", "total_cents": 4200, "version": 3})
}

// httpCeiling serves trivialJSON on a loopback server and loads it with
// clients closed-loop clients for d.
func httpCeiling(ctx context.Context, clients int, d time.Duration) loopResult {
	return loadHandler(ctx, clients, d, "GET /carts/{id}", trivialJSON, func(ctx context.Context, c *http.Client, url string, i int) error {
		_, err := do(ctx, c, http.MethodGet, url+"/carts/c"+strconv.Itoa(i%1000), "", http.StatusOK)
		return err
	})
}

// loadHandler serves h at pattern on a loopback server and runs request
// (against the server's URL) in a closed loop of clients clients for d.
func loadHandler(ctx context.Context, clients int, d time.Duration, pattern string, h http.HandlerFunc,
	request func(ctx context.Context, c *http.Client, url string, i int) error) loopResult {
	mux := http.NewServeMux()
	mux.HandleFunc(pattern, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newHTTPClient(clients)
	defer c.CloseIdleConnections()
	return closedLoop(ctx, clients, d, func(ctx context.Context, _, i int) error { return request(ctx, c, srv.URL, i) })
}

// trivialPost is the ceiling of a command request: it decodes a cart item,
// as the command API's POST /carts/{id}/items receives it, and answers a
// small JSON document with a position, as a command endpoint does, with
// nothing behind it.
func trivialPost(w http.ResponseWriter, r *http.Request) {
	var item cart.AddItem
	if err := json.NewDecoder(r.Body).Decode(&item); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"position": strconv.Itoa(item.Quantity)})
}

// httpPostCeiling serves trivialPost on a loopback server and loads it with
// clients closed-loop clients for d, each request built and its answer read
// as the cart workload's (cartRun.viaHTTP): a JSON body marshalled, the
// position unmarshalled from the answer.
func httpPostCeiling(ctx context.Context, clients int, d time.Duration) loopResult {
	return loadHandler(ctx, clients, d, "POST /carts/{id}/items", trivialPost, func(ctx context.Context, c *http.Client, url string, i int) error {
		b, err := json.Marshal(cartItem(i, i%5))
		if err != nil {
			return err
		}
		resp, err := do(ctx, c, http.MethodPost, url+"/carts/c"+strconv.Itoa(i%1000)+"/items", string(b), http.StatusOK)
		if err != nil {
			return err
		}
		var p struct {
			Position string `json:"position"`
		}
		return json.Unmarshal(resp, &p)
	})
}

// oneConn returns a client of opts' server limited to one connection.
func oneConn(opts *redis.Options) *redis.Client {
	o := *opts
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 1, 0, 1
	return redis.NewClient(&o)
}
