package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of a command.
const (
	outcomeAcked   = "acked"   // answered 2xx
	outcomeRefused = "refused" // answered 4xx: a rule or the request said no
	outcomeUnknown = "unknown" // no answer within the retry bound: it may or may not have landed
)

// op is one command as the workload sent it and the answer it got.
type op struct {
	Key      string // Idempotency-Key, unique per command
	Kind     string // open, add, change, remove, checkout, register
	Path     string
	Outcome  string
	Status   int
	Recorded bool   // Idempotency-Recorded: the command wrote events
	Position string // position token of a 2xx
	OrderID  string // of a checkout
	Start    time.Time
	Latency  time.Duration // until the final answer, retries included
	Attempts int
}

// products the workload sells, with their prices.
var products = []struct {
	id    string
	price int64
}{{"apple", 120}, {"pear", 95}, {"kiwi", 40}, {"mango", 310}, {"plum", 55}, {"fig", 230}, {"lime", 35}, {"date", 480}}

// workload drives commands at the command APIs and records every answer.
type workload struct {
	commands []string
	client   *http.Client
	retryFor time.Duration // how long one command is retried (same key)

	seq atomic.Int64
	mu  sync.Mutex
	ops []op
}

func newWorkload(commands []string) *workload {
	return &workload{
		commands: commands,
		// Longer than a pause of a role would make a request wait is not
		// useful: the command is retried on the other instance instead.
		client:   &http.Client{Timeout: 4 * time.Second},
		retryFor: 45 * time.Second,
	}
}

// send sends one command with a fresh Idempotency-Key, retrying with the
// same key on the other command API after a transport error, a 5xx, a 409
// (the handler ran out of attempts) or a 429, until retryFor has passed.
func (w *workload) send(ctx context.Context, rng *rand.Rand, kind, method, path, body string) op {
	o := op{Key: fmt.Sprintf("chaos-%d", w.seq.Add(1)), Kind: kind, Path: path, Start: time.Now(), Outcome: outcomeUnknown}
	first := rng.IntN(len(w.commands))
	deadline := o.Start.Add(w.retryFor)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(50+rng.IntN(150)) * time.Millisecond):
			}
		}
		o.Attempts++
		base := w.commands[(first+attempt)%len(w.commands)]
		// The request outlives ctx: a command sent is answered or given up
		// by the deadline, never abandoned half-way by the end of the run.
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, base+path, strings.NewReader(body))
		if err != nil {
			break
		}
		req.Header.Set("Idempotency-Key", o.Key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := w.client.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		o.Status = res.StatusCode
		switch {
		case res.StatusCode/100 == 2:
			var r struct {
				Position string `json:"position"`
				OrderID  string `json:"order_id"`
			}
			_ = json.Unmarshal(b, &r)
			o.Outcome, o.Position, o.OrderID = outcomeAcked, r.Position, r.OrderID
			o.Recorded = res.Header.Get("Idempotency-Recorded") == "true"
		case res.StatusCode/100 == 5 || res.StatusCode == http.StatusConflict || res.StatusCode == http.StatusTooManyRequests:
			continue
		default:
			o.Outcome = outcomeRefused
		}
		break
	}
	o.Latency = time.Since(o.Start)
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
	return o
}

// Customers of the workload: the registered ones have credit limits that
// some checkouts exceed; the others were never registered, so their orders
// are rejected.
const (
	registeredCustomers   = 6
	unregisteredCustomers = 2
)

func customerID(i int) string { return fmt.Sprintf("cust-%d", i) }

// register registers the workload's customers.
func (w *workload) register(ctx context.Context, rng *rand.Rand) error {
	for i := range registeredCustomers {
		limit := 20000 + rng.Int64N(200000)
		o := w.send(ctx, rng, "register", "POST", "/customers",
			fmt.Sprintf(`{"customer_id":%q,"credit_limit_cents":%d}`, customerID(i), limit))
		if o.Outcome != outcomeAcked {
			return fmt.Errorf("chaos: registering customer %s: %s (HTTP %d)", customerID(i), o.Outcome, o.Status)
		}
	}
	return nil
}

// run is one client until ctx ends: it opens carts and fills and checks
// them out, with some commands that the cart's rules refuse.
func (w *workload) run(ctx context.Context, worker int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(worker)))
	type cartState struct {
		id    string
		lines map[string]bool
	}
	var carts []*cartState
	n := 0
	for ctx.Err() == nil {
		if len(carts) < 2 || rng.IntN(10) == 0 {
			n++
			id := fmt.Sprintf("w%d-c%d", worker, n)
			cust := customerID(rng.IntN(registeredCustomers + unregisteredCustomers))
			o := w.send(ctx, rng, "open", "POST", "/carts", fmt.Sprintf(`{"customer_id":%q,"cart_id":%q}`, cust, id))
			if o.Outcome == outcomeAcked {
				carts = append(carts, &cartState{id: id, lines: map[string]bool{}})
			}
			continue
		}
		i := rng.IntN(len(carts))
		c := carts[i]
		p := products[rng.IntN(len(products))]
		switch k := rng.IntN(22); {
		case k < 11:
			price := p.price
			if rng.IntN(15) == 0 {
				price++ // refused when the product is already in the cart
			}
			o := w.send(ctx, rng, "add", "POST", "/carts/"+c.id+"/items",
				fmt.Sprintf(`{"product_id":%q,"quantity":%d,"unit_price_cents":%d}`, p.id, 1+rng.IntN(3), price))
			if o.Outcome == outcomeAcked {
				c.lines[p.id] = true
			}
		case k < 14:
			w.send(ctx, rng, "change", "PUT", "/carts/"+c.id+"/items/"+p.id, fmt.Sprintf(`{"quantity":%d}`, 1+rng.IntN(6)))
		case k < 16:
			o := w.send(ctx, rng, "remove", "DELETE", "/carts/"+c.id+"/items/"+p.id, "")
			if o.Outcome == outcomeAcked {
				delete(c.lines, p.id)
			}
		case k < 20:
			w.send(ctx, rng, "add", "POST", "/carts/"+c.id+"/items",
				fmt.Sprintf(`{"product_id":%q,"quantity":0,"unit_price_cents":%d}`, p.id, p.price)) // refused: no quantity
		default:
			if len(c.lines) == 0 {
				continue
			}
			o := w.send(ctx, rng, "checkout", "POST", "/carts/"+c.id+"/checkout", "")
			if o.Outcome != outcomeUnknown {
				// Done with this cart: the saga confirms the order or
				// reopens the cart.
				carts = append(carts[:i], carts[i+1:]...)
			}
		}
	}
}

// recorded returns a copy of the ops so far.
func (w *workload) recorded() []op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]op(nil), w.ops...)
}

// getJSON GETs url and returns the status and body; status 0 is a transport
// error.
func getJSON(ctx context.Context, c *http.Client, url string) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, nil
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	return res.StatusCode, bytes.TrimSpace(b)
}
