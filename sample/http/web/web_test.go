package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/web"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a memory store with a few records, a private Redis with the
// eventlog projection run up to the head, and a web.Handler over them.
type fixture struct {
	store *memory.Store
	rdb   redis.UniversalClient
	srv   *httptest.Server
	head  eventstore.Position
}

func newFixture(t *testing.T, cfg web.Config) *fixture { return newFixtureStore(t, cfg, false) }

// newFixtureStore is newFixture; withStore gives the handler the store, as
// in "cart serve".
func newFixtureStore(t *testing.T, cfg web.Config, withStore bool) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{store: memory.New(), rdb: redistest.Start(t).Client(t)}
	for i, s := range []string{"cart-c1", "order-o1", "cart-c2"} {
		res, err := f.store.Append(ctx, s, eventstore.Any, eventstore.Event{Type: []string{"cart.opened", "order.placed", "cart.opened"}[i],
			Data: []byte(`{"n":` + fmt.Sprint(i) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		f.head = res.Position
	}
	r, err := projection.NewRunner(projection.Config{Store: f.store, Redis: f.rdb, Projection: web.TailProjection(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitTail(t, f.rdb, f.head)
	if withStore {
		cfg.Store = f.store
	}
	cfg.Redis, cfg.Logger, cfg.Interval = f.rdb, quiet, 20*time.Millisecond
	if cfg.Projections == nil {
		cfg.Projections = []projection.Projection{web.TailProjection()}
	}
	h, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	f.srv = httptest.NewServer(httpjson.Mux(mux))
	t.Cleanup(func() { f.srv.Close(); h.Close() })
	return f
}

// waitTail waits until the eventlog projection is active and has applied
// position.
func waitTail(t *testing.T, rdb redis.UniversalClient, position eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := query.WaitFor(ctx, rdb, web.TailName, position)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("eventlog did not reach %s: %v", position, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func do(t *testing.T, method, url, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestAdminActionsNeedTheToken(t *testing.T) {
	t.Run("disabled without a token", func(t *testing.T) {
		f := newFixture(t, web.Config{})
		status, body := do(t, "POST", f.srv.URL+"/web/rebuild", `{"projection":"eventlog"}`, map[string]string{"Authorization": "Bearer x"})
		if status != http.StatusForbidden || body["code"] != httpjson.CodeAdminDisabled {
			t.Fatalf("got %d %v, want 403 %s", status, body, httpjson.CodeAdminDisabled)
		}
	})
	t.Run("retry disabled without a token", func(t *testing.T) {
		f := newFixture(t, web.Config{})
		status, body := do(t, "POST", f.srv.URL+"/web/deadletters/retry", `{"projection":"eventlog","position":"2"}`,
			map[string]string{"Authorization": "Bearer x"})
		if status != http.StatusForbidden || body["code"] != httpjson.CodeAdminDisabled {
			t.Fatalf("got %d %v, want 403 %s", status, body, httpjson.CodeAdminDisabled)
		}
	})
	f := newFixture(t, web.Config{AdminToken: "s3cret"})
	for _, a := range []struct {
		path, body string
		// status and code with the right token, from the page's origin
		status int
		code   string
	}{
		{"/web/rebuild", `{"projection":"nope"}`, http.StatusNotFound, httpjson.CodeNotFound},
		{"/web/deadletters/retry", `{"projection":"eventlog","position":"2"}`, http.StatusNotFound, httpjson.CodeNotFound},
	} {
		checkAdmin(t, f, a.path, a.body, a.status, a.code)
	}
}

// checkAdmin checks that the action at path is refused without the right
// token or from another site, and answers status and code with it.
func checkAdmin(t *testing.T, f *fixture, path, reqBody string, okStatus int, okCode string) {
	t.Helper()
	url := f.srv.URL + path
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"no token", nil, http.StatusUnauthorized, httpjson.CodeUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer s3cre"}, http.StatusUnauthorized, httpjson.CodeUnauthorized},
		{"token as a cookie", map[string]string{"Cookie": "token=s3cret"}, http.StatusUnauthorized, httpjson.CodeUnauthorized},
		{"another site", map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://evil.example"}, http.StatusForbidden, httpjson.CodeForbidden},
		{"cross-site fetch", map[string]string{"Authorization": "Bearer s3cret", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, httpjson.CodeForbidden},
		{"the token, same origin", map[string]string{"Authorization": "Bearer s3cret", "Origin": f.srv.URL}, okStatus, okCode},
	} {
		status, body := do(t, "POST", url, reqBody, c.hdr)
		if code, _ := body["code"].(string); status != c.status || code != c.code {
			t.Errorf("%s %s: got %d %v, want %d %s", path, c.name, status, body, c.status, c.code)
		}
	}
	if status, _ := do(t, "GET", url, "", map[string]string{"Authorization": "Bearer s3cret"}); status != http.StatusMethodNotAllowed {
		t.Errorf("GET of an action: %d, want 405", status)
	}
}

func TestRebuildFromThePage(t *testing.T) {
	g := newFixtureStore(t, web.Config{AdminToken: "s3cret"}, true)
	srv := g.srv
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if status, body := do(t, "POST", srv.URL+"/web/rebuild", `{"projection":"nope"}`, auth); status != http.StatusNotFound {
		t.Fatalf("unknown projection: %d %v", status, body)
	}
	if status, body := do(t, "POST", srv.URL+"/web/rebuild", `{"projection":"eventlog"}`, auth); status != http.StatusAccepted {
		t.Fatalf("rebuild: %d %v", status, body)
	}
	// The event stream reports the job until it is done, and the active
	// build moves to generation 1.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last web.StatusEvent
	err := readEvents(ctx, srv.URL+"/web/events?tail=0", func(event, data string) bool {
		if event != "status" {
			t.Errorf("event %q with ?tail=0", event)
			return true
		}
		if err := json.Unmarshal([]byte(data), &last); err != nil {
			t.Fatal(err)
		}
		return len(last.Rebuilds) == 1 && last.Rebuilds[0].Done
	})
	if err != nil {
		t.Fatalf("no finished rebuild in the stream: %v; last %+v", err, last)
	}
	j := last.Rebuilds[0]
	if j.Error != "" || j.Build != "1g1" || j.Previous != "1" || len(j.Samples) < 2 || j.Samples[0].Percent != 0 ||
		j.Samples[len(j.Samples)-1].Percent != 100 {
		t.Fatalf("job %+v: want 1 → 1g1 from 0%% to 100%%", j)
	}
	if a, _ := g.rdb.Get(ctx, query.ActiveKey(web.TailName)).Result(); a != "1g1" {
		t.Fatalf("active build %q, want 1g1", a)
	}
	if last.HeadFrom != "store" || last.Head != g.head.String() {
		t.Errorf("head %s from %s, want %s from the store", last.Head, last.HeadFrom, g.head)
	}
}

// readEvents reads an SSE stream, calling fn for each event until it
// returns true.
func readEvents(ctx context.Context, url string, fn func(event, data string) bool) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		return fmt.Errorf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		} else if v, ok := strings.CutPrefix(line, "data: "); ok {
			if fn(event, v) {
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

func TestEventStreamTailAndFilters(t *testing.T) {
	f := newFixture(t, web.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var tails []web.TailEvent
	var status web.StatusEvent
	err := readEvents(ctx, f.srv.URL+"/web/events?stream=cart-", func(event, data string) bool {
		switch event {
		case "status":
			_ = json.Unmarshal([]byte(data), &status)
		case "tail":
			var te web.TailEvent
			if err := json.Unmarshal([]byte(data), &te); err != nil {
				t.Fatal(err)
			}
			tails = append(tails, te)
		}
		return len(tails) > 0 && len(status.Rows) > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	first := tails[0]
	if !first.Reset || len(first.Entries) != 2 || first.Entries[0].Stream != "cart-c1" || first.Entries[1].Stream != "cart-c2" ||
		first.Entries[0].Type != "cart.opened" || first.Entries[1].Data != `{"n":2}` {
		t.Fatalf("first tail event %+v: want a reset with cart-c1, cart-c2", first)
	}
	r := status.Rows[0]
	if r.Name != web.TailName || !r.Active || r.Checkpoint != f.head || r.Build != "1" || r.Holder == "" {
		t.Fatalf("status row %+v", r)
	}
	if status.HeadFrom != "runners" {
		t.Errorf("head from %q without a store, want runners", status.HeadFrom)
	}

	// A record appended later arrives in a later tail event, filtered.
	if _, err := f.store.Append(ctx, "order-o2", eventstore.Any, eventstore.Event{Type: "order.placed"}); err != nil {
		t.Fatal(err)
	}
	res, err := f.store.Append(ctx, "cart-c3", eventstore.Any, eventstore.Event{Type: "cart.opened"})
	if err != nil {
		t.Fatal(err)
	}
	var got []web.TailEntry
	err = readEvents(ctx, f.srv.URL+"/web/events?status=0&type=cart.", func(event, data string) bool {
		var te web.TailEvent
		_ = json.Unmarshal([]byte(data), &te)
		got = append(got, te.Entries...)
		return len(got) > 0 && got[len(got)-1].Position == res.Position.String()
	})
	if err != nil {
		t.Fatalf("cart-c3 never arrived: %v (got %+v)", err, got)
	}
	for _, e := range got {
		if !strings.HasPrefix(e.Type, "cart.") {
			t.Errorf("entry %+v passed the filter type=cart.", e)
		}
	}
}

func TestPagesAreServedWithAStrictPolicy(t *testing.T) {
	f := newFixture(t, web.Config{})
	for _, path := range []string{"/", "/ops", "/assets/app.js", "/assets/style.css"} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, CSP %q", path, resp.StatusCode, csp)
		}
		// User data reaches the page as text only: no HTML sinks in the code,
		// no inline script or third-party origin in the pages.
		for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "http://", "https://", "<script>"} {
			if strings.Contains(string(b), sink) {
				t.Errorf("%s contains %q", path, sink)
			}
		}
	}
	if resp, err := http.Get(f.srv.URL + "/no-such-page"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %v %v, want 404", resp.StatusCode, err)
	}
}

func TestCommandsForwardedToTheCommandAPI(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	cmdAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b)+" key="+r.Header.Get("Idempotency-Key")+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"cart_id":"c9","position":"7"}`))
	}))
	defer cmdAPI.Close()
	f := newFixture(t, web.Config{CommandURL: cmdAPI.URL, ProxyCommands: true})
	status, body := do(t, "POST", f.srv.URL+"/carts", `{"customer_id":"ann"}`, map[string]string{"Idempotency-Key": "k1", "Authorization": "Bearer x"})
	if status != http.StatusCreated || body["cart_id"] != "c9" {
		t.Fatalf("forwarded open: %d %v", status, body)
	}
	if status, _ := do(t, "DELETE", f.srv.URL+"/carts/c9/items/tea", "", nil); status != http.StatusCreated {
		t.Fatalf("forwarded delete: %d", status)
	}
	if status, body := do(t, "POST", f.srv.URL+"/carts", `{}`, map[string]string{"Origin": "http://evil.example"}); status != http.StatusForbidden {
		t.Fatalf("cross-origin command: %d %v, want 403", status, body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{`POST /carts {"customer_id":"ann"} key=k1 auth=`, `DELETE /carts/c9/items/tea  key= auth=`}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("command API saw %q, want %q", seen, want)
	}

	g := newFixture(t, web.Config{ProxyCommands: true})
	if status, body := do(t, "POST", g.srv.URL+"/carts", `{}`, nil); status != http.StatusServiceUnavailable || body["code"] != httpjson.CodeUnavailable {
		t.Fatalf("no command URL: %d %v, want 503", status, body)
	}
}

func TestDeadLettersListed(t *testing.T) {
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	entry, _ := json.Marshal(projection.DeadLetterEntry{Position: "2", StreamID: "order-o1", Version: 1, Type: "order.placed", Error: "boom <b>"})
	if err := f.rdb.RPush(ctx, projection.DeadLetterKey(web.TailName, query.Version(1)), entry).Err(); err != nil {
		t.Fatal(err)
	}
	status, body := do(t, "GET", f.srv.URL+"/web/deadletters?projection="+web.TailName, "", nil)
	entries, _ := body["entries"].([]any)
	if status != http.StatusOK || body["build"] != "1" || len(entries) != 1 || entries[0].(map[string]any)["error"] != "boom <b>" {
		t.Fatalf("got %d %v", status, body)
	}
	for _, q := range []string{"projection=No!", "projection=eventlog&build=x"} {
		if status, _ := do(t, "GET", f.srv.URL+"/web/deadletters?"+q, "", nil); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, status)
		}
	}
	if status, _ := do(t, "GET", f.srv.URL+"/web/deadletters?projection=nothing", "", nil); status != http.StatusNotFound {
		t.Errorf("projection without a build: %d, want 404", status)
	}
}

func TestDeadLetterRetriedFromThePage(t *testing.T) {
	f := newFixture(t, web.Config{AdminToken: "s3cret"})
	ctx := context.Background()
	var rec eventstore.Record
	for r, err := range f.store.ReadStream(ctx, "order-o1", 1) {
		if err != nil {
			t.Fatal(err)
		}
		rec = r
		break
	}
	// A record of the log set aside as if it had failed, with the runner of
	// the fixture holding the build's lease.
	entry, _ := json.Marshal(projection.DeadLetterEntry{Position: rec.Position.String(), StreamID: rec.StreamID,
		Version: rec.Version, Type: rec.Type, EventID: rec.ID.String(), Error: "boom"})
	if err := f.rdb.RPush(ctx, projection.DeadLetterKey(web.TailName, query.Version(1)), entry).Err(); err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	url := f.srv.URL + "/web/deadletters/retry"
	for _, body := range []string{`{"projection":"eventlog"}`, `{"projection":"No!","position":"2"}`,
		`{"projection":"eventlog","position":"2","build":"x"}`, `nope`} {
		if status, got := do(t, "POST", url, body, auth); status != http.StatusBadRequest {
			t.Errorf("%s: %d %v, want 400", body, status, got)
		}
	}
	status, body := do(t, "POST", url, `{"projection":"eventlog","position":"`+rec.Position.String()+`"}`, auth)
	if status != http.StatusAccepted || body["build"] != "1" || body["state"] != "queued" {
		t.Fatalf("retry: %d %v, want 202 queued for build 1", status, body)
	}
	// The request left the dead letters at once; the lease holder applies it
	// and empties the retry list.
	if status, body := do(t, "GET", f.srv.URL+"/web/deadletters?projection="+web.TailName, "", nil); status != http.StatusOK ||
		body["count"] != float64(0) {
		t.Fatalf("listing right after the request: %d %v, want no entries", status, body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body := do(t, "GET", f.srv.URL+"/web/deadletters?projection="+web.TailName, "", nil)
		retrying, _ := body["retrying"].([]any)
		if status == http.StatusOK && body["count"] == float64(0) && len(retrying) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry not applied: %d %v", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, body := do(t, "POST", url, `{"projection":"eventlog","position":"`+rec.Position.String()+`"}`, auth); status != http.StatusNotFound {
		t.Fatalf("second retry: %d %v, want 404", status, body)
	}
}

func TestRebuildRequestedWithoutStore(t *testing.T) {
	// query-api: no event store here; the rebuild is recorded for a projector.
	f := newFixture(t, web.Config{AdminToken: "s3cret"})
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	status, body := do(t, "POST", f.srv.URL+"/web/rebuild", `{"projection":"eventlog"}`, auth)
	if status != http.StatusAccepted || body["requested"] != true || body["projection"] != web.TailName {
		t.Fatalf("rebuild: %d %v, want 202 requested", status, body)
	}
	if status, body := do(t, "POST", f.srv.URL+"/web/rebuild", `{"projection":"eventlog"}`, auth); status != http.StatusConflict {
		t.Fatalf("second request: %d %v, want 409", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A projector (it has the store) serves the request.
	var wg sync.WaitGroup
	wg.Go(func() {
		cfg := projection.Config{Store: f.store, Redis: f.rdb, Projection: web.TailProjection(), Logger: quiet}
		if err := projection.ServeRebuildRequests(ctx, projection.ServeRebuildOptions{Config: cfg, Interval: 10 * time.Millisecond}); err != nil {
			t.Error(err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	for f.rdb.Exists(ctx, projection.RebuildRequestKey(web.TailName)).Val() != 0 {
		if ctx.Err() != nil {
			t.Fatal("the request was not served")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a := f.rdb.Get(ctx, query.ActiveKey(web.TailName)).Val(); a != "1g1" {
		t.Fatalf("active build %q, want 1g1", a)
	}
}

func TestUnknownRoutesAndWrongMethodsAnswerJSON(t *testing.T) {
	f := newFixture(t, web.Config{})
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/no-such-page", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodGet, "/assets/no-such.js", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodGet, "/assets/", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodPost, "/ops", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/web/config", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
	} {
		req, err := http.NewRequest(c.method, f.srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e httpjson.Body
		what := c.method + " " + c.path
		if resp.StatusCode != c.status || json.Unmarshal(b, &e) != nil || e.Code != c.code || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with code %q", what, resp.StatusCode, b, c.status, c.code)
		}
		if got := resp.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q, want %q", what, got, c.allow)
		}
	}
}
