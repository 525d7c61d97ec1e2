package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettingErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		role Role
		cfg  Config
		env  string
	}{
		{RoleCommandAPI, Config{Addr: ":0"}, EnvStoreURL},
		{RoleCommandAPI, Config{StoreURL: "postgres://x", Addr: ":0"}, EnvStoreURL},
		{RoleCommandAPI, Config{StoreURL: "esdb://host:2113?tlss=false", Addr: ":0"}, EnvStoreURL},
		{RoleProjector, Config{StoreURL: "x.db", Addr: ":0"}, EnvRedisURL},
		{RoleQueryAPI, Config{RedisURL: "http://x", Addr: ":0"}, EnvRedisURL},
		{RoleQueryAPI, Config{RedisURL: "redis+cluster://x:7000/1", Addr: ":0"}, EnvRedisURL},
		{RoleQueryAPI, Config{RedisURL: "redis://x", Addr: "nope"}, EnvAddr},
		{RoleQueryAPI, Config{RedisURL: "redis://x", Addr: ":0", CommandURL: "localhost:8081"}, EnvCommandURL},
		{RoleServe, Config{StoreURL: "x.db", Addr: ":0", LogLevel: "loud"}, EnvLogLevel},
		{RoleQueryAPI, Config{RedisURL: "redis://x", Addr: ":0", MaxWaiters: -1}, EnvMaxWaiters},
		{RoleCommandAPI, Config{StoreURL: dir, Addr: "127.0.0.1:0"}, EnvStoreURL},
		{RoleSaga, Config{StoreURL: "x.db", RedisURL: "redis://x", Addr: ":0", BrokerURL: "kafka://x"}, EnvBrokerURL},
		{RoleServe, Config{StoreURL: "x.db", Addr: ":0", BrokerURL: "nats://"}, EnvBrokerURL},
	}
	for _, c := range cases {
		err := run(t.Context(), c.role, c.cfg, parts{})
		se, ok := errors.AsType[*SettingError](err)
		if !ok || se.Env != c.env {
			t.Errorf("%s %+v: error %v, want a SettingError naming %s", c.role, c.cfg, err, c.env)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, c.env+" (--") {
			t.Errorf("error %q is not one line starting with %s", msg, c.env)
		}
	}
	// query-api never looks at the store setting.
	if err := (Config{StoreURL: "postgres://x", RedisURL: "redis://x", Addr: ":0"}).Validate(RoleQueryAPI); err != nil {
		t.Errorf("query-api validated the store URL: %v", err)
	}
	// A Redis Cluster is named by the same setting, in its own URL form.
	if err := (Config{StoreURL: "x.db", RedisURL: "redis+cluster://h1:7000?addr=h2:7000", Addr: ":0"}).Validate(RoleProjector); err != nil {
		t.Errorf("a cluster URL was refused: %v", err)
	}
}

// lineWriter hands the first line written to it to a channel.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w <- strings.TrimSpace(string(p)):
	default:
	}
	return len(p), nil
}

func TestServeRunsAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	lines := make(lineWriter, 1)
	cfg := Config{
		StoreURL: filepath.Join(t.TempDir(), "data", "events.db"),
		Addr:     "127.0.0.1:0",
		Stdout:   lines,
		Logger:   slog.New(slog.DiscardHandler),
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, RoleServe, cfg) }()
	var url string
	select {
	case line := <-lines:
		_, url, _ = strings.Cut(line, " listening on ")
	case err := <-done:
		t.Fatalf("serve returned before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not print its URL")
	}
	get := func(path string) (int, string) {
		res, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	// Ready once the projectors have made the read models active.
	r := waitStatus(t, url+"/readyz", 200)
	code, body := r.status, r.body
	var ready ReadyBody
	if err := json.Unmarshal([]byte(body), &ready); err != nil || ready.Checks["store"] != "ok" || ready.Checks["redis"] != "ok" ||
		ready.Checks["read-models"] != "ok" || ready.Checks["projections"] != "ok" {
		t.Fatalf("/readyz %d %s", code, body)
	}
	res, err := http.Post(url+"/carts", "application/json", strings.NewReader(`{"customer_id":"ann","cart_id":"c1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var opened struct{ Position string }
	_ = json.NewDecoder(res.Body).Decode(&opened)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("POST /carts %d", res.StatusCode)
	}
	// Until its projection is active, the read model answers 503 not_ready.
	deadline := time.Now().Add(20 * time.Second)
	for code, body = get("/carts/c1?after=" + opened.Position); code == 503 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, body = get("/carts/c1?after=" + opened.Position)
	}
	if code != 200 || !strings.Contains(body, `"customer_id":"ann"`) {
		t.Fatalf("GET /carts/c1 %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "eventline_http_requests_total") ||
		!strings.Contains(body, "eventline_projection_") {
		t.Fatalf("/metrics %d lacks the command and projection metrics", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down")
	}
}

// A malformed Redis URL is named in the error without its password.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	for _, u := range []string{"redis://:s3cret@host:notaport", "redis://user:s3cret@host:6379/notadb", "http://user:s3cret@host",
		"redis+cluster://:s3cret@host:7000?nope=1", "rediss+cluster://u:s3cret@host:7000/2"} {
		_, err := parseRedisURL(u)
		if err == nil {
			t.Fatalf("%s: accepted", u)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error prints the password: %v", err)
		}
		if !strings.Contains(err.Error(), EnvRedisURL) {
			t.Fatalf("error does not name %s: %v", EnvRedisURL, err)
		}
	}
}
