package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/redistest"
)

// startRole runs role with cfg until the test ends and returns its URL.
func startRole(t testing.TB, role Role, cfg Config) (url string, stop func()) {
	t.Helper()
	return startRoleWith(t, role, cfg, defaultParts())
}

// startRoleWith is startRole with the parts p.
func startRoleWith(t testing.TB, role Role, cfg Config, p parts) (url string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	lines := make(lineWriter, 1)
	cfg.Addr, cfg.Stdout, cfg.Logger = "127.0.0.1:0", lines, slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	go func() { done <- run(ctx, role, cfg, p) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", role, err)
			}
		case <-time.After(time.Minute):
			t.Errorf("%s did not stop within a minute", role)
		}
	}
	t.Cleanup(stop)
	select {
	case line := <-lines:
		_, url, _ = strings.Cut(line, " listening on ")
	case err := <-done:
		t.Fatalf("%s returned before listening: %v", role, err)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not print its URL", role)
	}
	return url, stop
}

// getReply is one answer of a GET.
type getReply struct {
	status int
	body   string
}

func get(t *testing.T, url string) getReply {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return getReply{res.StatusCode, string(b)}
}

// waitStatus polls url until it answers want, for at most a minute.
func waitStatus(t *testing.T, url string, want int) getReply {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := get(t, url)
		if r.status == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s, want %d within a minute", url, r.status, r.body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// query-api is ready when it can answer queries: when its Redis answers PING
// but no longer holds the read models (here: restarted without its data; in
// the field also another server that took the address), its queries answer
// 503 and so must /readyz. It is ready again once a projector has rebuilt
// the read models.
func TestQueryAPIReadinessFollowsTheReadModels(t *testing.T) {
	rs := redistest.Start(t)
	if rs.Kind != redistest.KindProcess {
		t.Skipf("needs a redis-server to kill and restart, have %s", rs.Kind)
	}
	cfg := Config{StoreURL: filepath.Join(t.TempDir(), "events.db"), RedisURL: rs.URL}
	_, stopProjector := startRole(t, RoleProjector, cfg)
	queries, _ := startRole(t, RoleQueryAPI, cfg)

	waitStatus(t, queries+"/readyz", 200)
	if r := get(t, queries+"/products/top"); r.status != 200 {
		t.Fatalf("ready, but GET /products/top: %d %s", r.status, r.body)
	}

	// Without a projector, a Redis restarted empty stays empty.
	stopProjector()
	rs.Kill()
	rs.Restart()
	if r := get(t, queries+"/products/top"); r.status != 503 {
		t.Fatalf("read models gone, GET /products/top: %d %s, want 503", r.status, r.body)
	}
	r := get(t, queries+"/readyz")
	var body ReadyBody
	if err := json.Unmarshal([]byte(r.body), &body); r.status != 503 || err != nil ||
		body.Status != "unavailable" || body.Checks["redis"] != "ok" || !strings.Contains(body.Checks["read-models"], "no active version") {
		t.Fatalf("read models gone, queries answer 503, but /readyz: %d %s", r.status, r.body)
	}

	// A projector rebuilds them and the queries are ready again.
	startRole(t, RoleProjector, cfg)
	waitStatus(t, queries+"/readyz", 200)
	if r := get(t, queries+"/products/top"); r.status != 200 {
		t.Fatalf("ready again, but GET /products/top: %d %s", r.status, r.body)
	}
}
