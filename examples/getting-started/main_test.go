package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
)

// TestService runs the whole service (main's run) on a fresh SQLite file and a
// private redis-server, and talks to it over HTTP.
func TestService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	redisSrv := redistest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- run(runCtx, filepath.Join(t.TempDir(), "stock.db"), redisSrv.URL, ln) }()
	base := "http://" + ln.Addr().String()

	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %v", method, path, resp.StatusCode, err)
		}
		return resp.StatusCode, v
	}
	mustWrite := func(path, body string) string {
		t.Helper()
		code, v := call("POST", path, body)
		pos, _ := v["position"].(string)
		if _, err := eventstore.ParsePosition(pos); code != http.StatusOK || pos == "" || err != nil {
			t.Fatalf("POST %s %s = %d %v, want 200 and a position", path, body, code, v)
		}
		return pos
	}

	mustWrite("/items/apple/receive", `{"quantity":5}`)
	pos := mustWrite("/items/apple/ship", `{"quantity":2}`)

	// Read your write: ?after= waits for the read model. Until its first
	// version is active the service answers 503, which a client retries.
	var code int
	var level map[string]any
	for {
		code, level = call("GET", "/items/apple?after="+pos, "")
		if code != http.StatusServiceUnavailable {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the read model never became active")
		case <-time.After(time.Millisecond):
		}
	}
	want := map[string]any{"on_hand": 3.0, "received": 5.0, "shipped": 2.0}
	if code != http.StatusOK || len(level) != len(want) || level["on_hand"] != want["on_hand"] ||
		level["received"] != want["received"] || level["shipped"] != want["shipped"] {
		t.Errorf("GET after %s = %d %v, want 200 %v", pos, code, level, want)
	}

	for _, c := range []struct {
		method, path, body string
		code               int
		error              string
	}{
		{"POST", "/items/apple/ship", `{"quantity":4}`, http.StatusConflict, "not enough stock: 3 on hand, 4 asked"},
		{"POST", "/items/apple/receive", `{"quantity":-1}`, http.StatusConflict, "quantity must be positive"},
		{"POST", "/items/apple/receive", `{"quantity":`, http.StatusBadRequest, `the body must be {"quantity": n}`},
		{"GET", "/items/plum", "", http.StatusNotFound, "no such item"},
		{"GET", "/items/apple?after=x", "", http.StatusBadRequest, "after must be a position a command returned"},
	} {
		code, v := call(c.method, c.path, c.body)
		if code != c.code || v["error"] != c.error {
			t.Errorf("%s %s %s = %d %v, want %d %q", c.method, c.path, c.body, code, v, c.code, c.error)
		}
	}

	stop()
	if err := <-stopped; err != nil {
		t.Fatalf("run: %v", err)
	}
}
