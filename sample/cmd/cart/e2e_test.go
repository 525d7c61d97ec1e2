package main_test

// End-to-end tests of the split roles as separate processes: the cart binary
// is built once, and command-api, projector and query-api run against one
// SQLite file and a private redis-server.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/pgtest"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/sample/domain/cart"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cartBinary builds the cart binary once per test run.
func cartBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cart-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cart")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := pgtest.Run(m) // stops the private PostgreSQL server, if one was started
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is one running role.
type proc struct {
	t    *testing.T
	role string
	env  []string
	cmd  *exec.Cmd
	done chan struct{}
	url  string
	logs *bytes.Buffer
	mu   *sync.Mutex
}

// syncWriter guards the log buffer shared by the process's stderr copier and
// the test.
type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start runs role with env, waits for its "listening on" line and stops it
// when the test ends.
func start(t *testing.T, role string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, role: role, env: env, logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.launch()
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("--- %s logs ---\n%s", role, p.logs.String())
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) launch() {
	p.t.Helper()
	cmd := exec.Command(cartBinary(p.t), p.role)
	cmd.Env = append(os.Environ(), "EVENTLINE_ADDR=127.0.0.1:0", "EVENTLINE_LOG_LEVEL=info")
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stderr = syncWriter{p.mu, p.logs}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, url, ok := strings.Cut(sc.Text(), " listening on "); ok {
				lines <- url
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case p.url = <-lines:
	case <-p.done:
		p.t.Fatalf("%s exited before listening: %s", p.role, p.logs.String())
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not print its URL within 20s", p.role)
	}
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// client is an HTTP client with a bounded wait.
var client = &http.Client{Timeout: 15 * time.Second}

type reply struct {
	status int
	body   []byte
}

func send(t *testing.T, method, url, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, b}
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cluster is the three roles on one store and one Redis.
type cluster struct {
	redis                       *redistest.Server
	env                         []string
	commands, projector, querys *proc
}

func startCluster(t *testing.T) *cluster {
	rs := redistest.StartWith(t, redistest.Options{Persistent: true})
	env := []string{
		"EVENTLINE_STORE_URL=" + filepath.Join(t.TempDir(), "events.db"),
		"EVENTLINE_REDIS_URL=" + rs.URL,
	}
	c := &cluster{redis: rs, env: env}
	c.commands = start(t, "command-api", env...)
	c.projector = start(t, "projector", env...)
	c.querys = start(t, "query-api", env...)
	return c
}

// accepted is a command the command API accepted, with the position of the
// one event it wrote.
type accepted struct {
	position eventstore.Position
	cmd      cart.Command
	orderID  string
}

// model records the accepted commands of every cart.
type model struct {
	mu    sync.Mutex
	carts map[string][]accepted
	owner map[string]string
	last  eventstore.Position
}

func newModel() *model { return &model{carts: map[string][]accepted{}, owner: map[string]string{}} }

func (m *model) accept(t *testing.T, cartID string, cmd cart.Command, body []byte) {
	var res struct {
		Position string `json:"position"`
		OrderID  string `json:"order_id"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Errorf("accepted %T on %s with body %s: %v", cmd, cartID, body, err)
		return
	}
	pos, err := eventstore.ParsePosition(res.Position)
	if err != nil {
		t.Errorf("position %q: %v", res.Position, err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.carts[cartID] = append(m.carts[cartID], accepted{pos, cmd, res.OrderID})
	if m.last.Before(pos) {
		m.last = pos
	}
}

// expectedCart is the query side's cart document.
type expectedCart struct {
	CartID     string      `json:"cart_id"`
	CustomerID string      `json:"customer_id"`
	Status     string      `json:"status"`
	Items      []cart.Line `json:"items"`
	TotalCents int64       `json:"total_cents"`
	Version    uint64      `json:"version"`
}

// expected folds each cart's accepted commands in the order of their
// positions. Every accepted command of the workload writes exactly one
// event, so positions are distinct and order them without ambiguity.
func (m *model) expected(t *testing.T) (map[string]expectedCart, map[string]int) {
	t.Helper()
	carts := map[string]expectedCart{}
	units := map[string]int{}
	seen := map[eventstore.Position]bool{}
	for id, cmds := range m.carts {
		slices.SortFunc(cmds, func(a, b accepted) int { return a.position.Compare(b.position) })
		s := cart.Decider.Initial()
		for _, a := range cmds {
			if seen[a.position] {
				t.Fatalf("two accepted commands returned position %s", a.position)
			}
			seen[a.position] = true
			cmd := a.cmd
			if _, ok := cmd.(cart.CheckOut); ok {
				cmd = cart.CheckOut{OrderID: a.orderID}
			}
			events, err := cart.Decide(s, cmd)
			if err != nil || len(events) != 1 {
				t.Fatalf("cart %s: accepted %#v at %s, but the model decides %v, %v", id, cmd, a.position, events, err)
			}
			s = cart.Evolve(s, events[0])
		}
		items := s.Lines
		if items == nil {
			items = []cart.Line{}
		}
		carts[id] = expectedCart{CartID: id, CustomerID: s.CustomerID, Status: string(s.Status), Items: items,
			TotalCents: s.TotalCents, Version: uint64(len(cmds))}
		if s.Status == cart.StatusCheckedOut {
			for _, l := range s.Lines {
				units[l.ProductID] += l.Quantity
			}
		}
	}
	return carts, units
}

// check asserts that the query side shows exactly the model's state, read
// after the model's last position.
func (m *model) check(t *testing.T, queryURL string) {
	t.Helper()
	carts, units := m.expected(t)
	after := m.last.String()
	for id, want := range carts {
		r := query(t, queryURL+"/carts/"+id+"?after="+after)
		if r.status != 200 {
			t.Fatalf("GET /carts/%s: %d %s", id, r.status, r.body)
		}
		var got expectedCart
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cart %s:\n got %+v\nwant %+v", id, got, want)
		}
	}
	r := query(t, queryURL+"/products/top?limit=50&after="+after)
	if r.status != 200 {
		t.Fatalf("GET /products/top: %d %s", r.status, r.body)
	}
	var top struct {
		Products []struct {
			ProductID string `json:"product_id"`
			Units     int    `json:"units"`
		} `json:"products"`
	}
	if err := json.Unmarshal(r.body, &top); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i, p := range top.Products {
		got[p.ProductID] = p.Units
		if i > 0 && p.Units > top.Products[i-1].Units {
			t.Fatalf("leaderboard not sorted: %s", r.body)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(units) {
		t.Fatalf("leaderboard %v, want %v", got, units)
	}
	t.Logf("query side exact for %d carts and %d products at position %s", len(carts), len(units), after)
}

// query GETs url, retrying (bounded) while the read model answers 503 (not
// built yet, or Redis coming back) or 504 (?after= not reached in the query
// API's own bound, as when a projector just restarted).
func query(t *testing.T, url string) reply {
	t.Helper()
	var r reply
	waitFor(t, "GET "+url+" answers", 30*time.Second, func() bool {
		r = send(t, "GET", url, "")
		return r.status != 503 && r.status != 504
	})
	return r
}

var products = []struct {
	id    string
	price int64
}{{"apple", 120}, {"pear", 95}, {"kiwi", 40}, {"mango", 310}, {"plum", 55}, {"fig", 230}, {"lime", 35}, {"date", 480}}

// step is one command request of the workload.
type step struct {
	cartID       string
	method, path string
	body         string
	cmd          cart.Command
}

// workload returns the commands for carts: opens first (to be run before
// the rest), then a shuffled mix in which many commands of one cart run
// concurrently, with some that the cart's rules refuse.
func workload(rng *rand.Rand, prefix string, n int) (opens, rest []step) {
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		customer := fmt.Sprintf("cust%d", i%7)
		opens = append(opens, step{id, "POST", "/carts", fmt.Sprintf(`{"customer_id":%q,"cart_id":%q}`, customer, id), cart.Open{CustomerID: customer}})
		changes := 0
		for range 4 + rng.IntN(8) {
			p := products[rng.IntN(len(products))]
			switch k := rng.IntN(10); {
			case k < 5:
				q := 1 + rng.IntN(3)
				price := p.price
				if rng.IntN(10) == 0 {
					price++ // refused when the product is already in the cart
				}
				rest = append(rest, step{id, "POST", "/carts/" + id + "/items",
					fmt.Sprintf(`{"product_id":%q,"quantity":%d,"unit_price_cents":%d}`, p.id, q, price),
					cart.AddItem{ProductID: p.id, Quantity: q, UnitPriceCents: price}})
			case k < 7:
				// Each change sets a quantity no earlier state of the line
				// can have, so that an accepted change always writes an event.
				q := 200 + 60*changes
				changes++
				rest = append(rest, step{id, "PUT", "/carts/" + id + "/items/" + p.id, fmt.Sprintf(`{"quantity":%d}`, q),
					cart.ChangeQuantity{ProductID: p.id, Quantity: q}})
			case k < 8:
				rest = append(rest, step{id, "DELETE", "/carts/" + id + "/items/" + p.id, "", cart.RemoveItem{ProductID: p.id}})
			case k < 9:
				rest = append(rest, step{id, "POST", "/carts/" + id + "/items",
					fmt.Sprintf(`{"product_id":%q,"quantity":0,"unit_price_cents":%d}`, p.id, p.price),
					cart.AddItem{ProductID: p.id, Quantity: 0, UnitPriceCents: p.price}})
			default:
				rest = append(rest, step{id, "POST", "/carts/" + id + "/checkout", "", cart.CheckOut{}})
			}
		}
	}
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	return opens, rest
}

// run sends steps with workers concurrent clients, recording accepted
// commands in m; any answer other than 2xx, 404 and 422 fails the test.
// progress, if set, is called after each step.
func run(t *testing.T, url string, m *model, steps []step, workers int, progress func(done int)) {
	t.Helper()
	next := make(chan step)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range workers {
		wg.Go(func() {
			for s := range next {
				r := send(t, s.method, url+s.path, s.body)
				switch {
				case r.status/100 == 2:
					m.accept(t, s.cartID, s.cmd, r.body)
				case r.status == 404 || r.status == 422:
				default:
					t.Errorf("%s %s %s: %d %s", s.method, s.path, s.body, r.status, r.body)
				}
				if progress != nil {
					mu.Lock()
					done++
					n := done
					mu.Unlock()
					progress(n)
				}
			}
		})
	}
	for _, s := range steps {
		next <- s
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// A random workload over HTTP, with many concurrent commands on the same
// carts, converges on the query side to exactly what the accepted commands
// imply — even though the projector is SIGKILLed half-way and restarted.
func TestEndToEndWithProjectorKilled(t *testing.T) {
	c := startCluster(t)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	m := newModel()
	opens, rest := workload(rng, "cart", 50)
	run(t, c.commands.url, m, opens, 8, nil)

	killAt := len(rest) / 2
	killed := make(chan struct{})
	var once sync.Once
	run(t, c.commands.url, m, rest, 16, func(done int) {
		if done == killAt {
			once.Do(func() {
				c.projector.stop(syscall.SIGKILL)
				close(killed)
			})
		}
	})
	<-killed
	t.Logf("%d commands sent, projector SIGKILLed after %d", len(opens)+len(rest), killAt)
	c.projector.launch()
	m.check(t, c.querys.url)
}

// Redis down: commands are still accepted, queries answer 503; when Redis
// returns the projector catches up and queries are exact. Command API down:
// queries keep answering.
func TestFaults(t *testing.T) {
	c := startCluster(t)
	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	m := newModel()
	opens, rest := workload(rng, "before", 10)
	run(t, c.commands.url, m, opens, 4, nil)
	run(t, c.commands.url, m, rest, 4, nil)
	m.check(t, c.querys.url)

	c.redis.Kill()
	opens, rest = workload(rng, "during", 10)
	for _, s := range opens {
		if r := send(t, s.method, c.commands.url+s.path, s.body); r.status != 201 {
			t.Fatalf("with Redis down, %s %s: %d %s", s.method, s.path, r.status, r.body)
		} else {
			m.accept(t, s.cartID, s.cmd, r.body)
		}
	}
	run(t, c.commands.url, m, rest, 4, nil)
	for _, path := range []string{"/carts/before0", "/products/top", "/customers/cust0/carts"} {
		r := send(t, "GET", c.querys.url+path, "")
		if r.status != 503 {
			t.Fatalf("with Redis down, GET %s: %d %s, want 503", path, r.status, r.body)
		}
	}
	if r := send(t, "GET", c.querys.url+"/readyz", ""); r.status != 503 {
		t.Fatalf("query-api /readyz with Redis down: %d", r.status)
	}
	if r := send(t, "GET", c.commands.url+"/readyz", ""); r.status != 200 {
		t.Fatalf("command-api /readyz with Redis down: %d %s", r.status, r.body)
	}

	c.redis.Restart()
	m.check(t, c.querys.url)

	c.commands.stop(syscall.SIGTERM)
	if r := send(t, "GET", c.querys.url+"/carts/during0", ""); r.status != 200 {
		t.Fatalf("with the command API down, GET /carts/during0: %d %s", r.status, r.body)
	}
	m.check(t, c.querys.url)
	for _, p := range []*proc{c.projector, c.querys} {
		if r := send(t, "GET", p.url+"/healthz", ""); r.status != 200 {
			t.Fatalf("%s /healthz: %d", p.role, r.status)
		}
	}
	r := send(t, "GET", c.projector.url+"/metrics", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte("eventline_projection_")) {
		t.Fatalf("projector /metrics: %d, no eventline_projection_ metrics", r.status)
	}
}

// Every role started on a taken port says so at once and exits 2, before it
// opens the store or Redis, and before a line of log: it listens first.
func TestTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	rs := redistest.Start(t)
	for _, role := range []string{"serve", "command-api", "projector", "query-api", "saga"} {
		dir := t.TempDir()
		cmd := exec.Command(cartBinary(t), role)
		cmd.Env = append(os.Environ(), "EVENTLINE_ADDR="+taken.Addr().String(), "EVENTLINE_LOG_LEVEL=debug",
			"EVENTLINE_STORE_URL="+filepath.Join(dir, "events.db"))
		if role != "serve" {
			cmd.Env = append(cmd.Env, "EVENTLINE_REDIS_URL="+rs.URL)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		want := "cart: EVENTLINE_ADDR (--addr): cannot listen: listen tcp " + taken.Addr().String() + ": bind: address already in use\n"
		if code != 2 || stderr.String() != want || stdout.Len() != 0 {
			t.Errorf("%s on a taken port: exit %d (%v), stdout %q, stderr:\n%s\nwant exit 2 and only:\n%s",
				role, code, err, stdout.String(), stderr.String(), want)
		}
		if _, err := os.Stat(filepath.Join(dir, "events.db")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s on a taken port opened the store (%v)", role, err)
		}
	}
}
