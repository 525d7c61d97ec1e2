package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/pgtest"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, string(b)}
}

// failsFast reports whether r is the answer of an open breaker of dep: 503,
// a Retry-After, and the JSON error body naming dep.
func failsFast(r reply, dep string) bool {
	var body httpjson.Body
	return r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "" &&
		json.Unmarshal([]byte(r.body), &body) == nil && body.Code == httpjson.CodeUnavailable && body.Dependency == dep
}

func readyBody(t *testing.T, url string) (int, ReadyBody) {
	t.Helper()
	r := do(t, "GET", url+"/readyz", "")
	var body ReadyBody
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("/readyz: %d %q: %v", r.status, r.body, err)
	}
	return r.status, body
}

// until polls f until it is true, for at most a minute.
func until(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis killed under serve: the redis breaker opens, queries fail fast with
// 503 naming redis, /readyz shows it open, while commands are still
// accepted. Redis restarted (empty): a probe closes the breaker, the
// projector rebuilds the read models, and every acknowledged cart is there.
func TestRedisKilledOpensTheBreakerAndRecovers(t *testing.T) {
	rs := redistest.Start(t)
	if rs.Kind != redistest.KindProcess {
		t.Skipf("needs a redis-server to kill and restart, have %s", rs.Kind)
	}
	url, _ := startRole(t, RoleServe, Config{
		StoreURL: filepath.Join(t.TempDir(), "events.db"), RedisURL: rs.URL,
		BreakerFailures: 3, BreakerOpenFor: 200 * time.Millisecond,
	})
	waitStatus(t, url+"/readyz", 200)
	var acked []string
	open := func(i int) int {
		id := fmt.Sprintf("c%d", i)
		r := do(t, "POST", url+"/carts", fmt.Sprintf(`{"customer_id":"ann","cart_id":%q}`, id))
		if r.status == http.StatusCreated {
			acked = append(acked, id)
		}
		return r.status
	}
	for i := 0; i < 3; i++ {
		if s := open(i); s != http.StatusCreated {
			t.Fatalf("POST /carts: %d", s)
		}
	}
	until(t, "cart c2 projected", func() bool { return do(t, "GET", url+"/carts/c2", "").status == 200 })

	rs.Kill()
	until(t, "a query answered by the open breaker", func() bool { return failsFast(do(t, "GET", url+"/carts/c1", ""), "redis") })
	status, body := readyBody(t, url)
	if status != 503 || body.Breakers["redis"] == "closed" || body.Breakers["store"] != "closed" {
		t.Fatalf("/readyz with Redis down: %d %+v, want 503 and the redis breaker not closed", status, body)
	}
	// The write path does not need Redis.
	for i := 3; i < 6; i++ {
		if s := open(i); s != http.StatusCreated {
			t.Fatalf("POST /carts with Redis down: %d, want 201", s)
		}
	}

	rs.Restart()
	until(t, "ready again", func() bool {
		status, body := readyBody(t, url)
		return status == 200 && body.Breakers["redis"] == "closed"
	})
	for _, id := range acked {
		until(t, "acknowledged cart "+id+" in the rebuilt read model", func() bool {
			return do(t, "GET", url+"/carts/"+id, "").status == 200
		})
	}
	if m := do(t, "GET", url+"/metrics", ""); !strings.Contains(m.body, `eventline_breaker_transitions_total{breaker="redis",state="open"}`) {
		t.Fatalf("/metrics has no redis breaker transitions:\n%s", m.body)
	}
}

// The PostgreSQL event store stopped under command-api: the store breaker
// opens and commands fail fast with 503 naming the store; after a restart a
// probe closes it, and every command acknowledged is in the log once.
func TestStoreStoppedOpensTheBreakerAndRecovers(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	db := pgtest.NewDatabase(t, srv.URL("postgres"))
	url, _ := startRole(t, RoleCommandAPI, Config{
		StoreURL: db, BreakerFailures: 3, BreakerOpenFor: 200 * time.Millisecond, StoreTimeout: 2 * time.Second,
	})
	var acked []string
	n := 0
	open := func() reply {
		n++
		id := fmt.Sprintf("c%d", n)
		r := do(t, "POST", url+"/carts", fmt.Sprintf(`{"customer_id":"ann","cart_id":%q}`, id))
		if r.status == http.StatusCreated {
			acked = append(acked, id)
		}
		return r
	}
	for i := 0; i < 3; i++ {
		if r := open(); r.status != http.StatusCreated {
			t.Fatalf("POST /carts: %d %s", r.status, r.body)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	until(t, "a command answered by the open breaker", func() bool { return failsFast(open(), "store") })
	if status, body := readyBody(t, url); status != 503 || body.Breakers["store"] == "closed" {
		t.Fatalf("/readyz with the store down: %d %+v", status, body)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	until(t, "a command accepted again", func() bool { return open().status == http.StatusCreated })
	until(t, "the store breaker closed", func() bool {
		_, body := readyBody(t, url)
		return body.Breakers["store"] == "closed"
	})

	st, err := OpenStore(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	count := map[string]int{}
	for rec, err := range st.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		count[rec.StreamID]++
	}
	for _, id := range acked {
		if count["cart-"+id] != 1 {
			t.Errorf("acknowledged cart %s has %d events in the log, want 1", id, count["cart-"+id])
		}
	}
	t.Logf("%d commands acknowledged, %d attempted", len(acked), n)
}
