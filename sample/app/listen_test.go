package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/eventline/eventline/internal/redistest"
)

// recorder is a slog.Handler that keeps every record's message.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// A taken port is reported by every role before it starts anything: no
// event store file, no connection to Redis, no embedded Redis, no runner, not
// a line of log. (serve used to start everything, log a dozen lines, and
// spend up to 30 s stopping it all again before it said the port was taken.)
func TestTakenPortFailsBeforeStarting(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	rs := redistest.Start(t)
	rc := rs.Client(t)
	connections := func() string {
		info, err := rc.Info(t.Context(), "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_connections_received:"); ok {
				return v
			}
		}
		t.Fatalf("INFO stats has no total_connections_received:\n%s", info)
		return ""
	}
	for _, role := range Roles() {
		t.Run(string(role), func(t *testing.T) {
			before := connections()
			storePath := filepath.Join(t.TempDir(), "events.db")
			cfg := Config{StoreURL: storePath, Addr: taken.Addr().String(), Stdout: lineWriter(make(chan string, 1))}
			if role != RoleServe {
				cfg.RedisURL = rs.URL
			}
			rec := &recorder{}
			cfg.Logger = slog.New(rec)
			err := run(t.Context(), role, cfg, defaultParts())
			se, ok := errors.AsType[*SettingError](err)
			if !ok || se.Env != EnvAddr || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("error %v, want a SettingError naming %s that says the address is in use", err, EnvAddr)
			}
			if msgs := rec.messages(); len(msgs) != 0 {
				t.Errorf("logged %d lines before reporting the taken port: %q", len(msgs), msgs)
			}
			if _, err := os.Stat(storePath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the event store was opened (stat %s: %v)", storePath, err)
			}
			if after := connections(); after != before {
				t.Errorf("Redis received connections (%s, then %s)", before, after)
			}
		})
	}
}
