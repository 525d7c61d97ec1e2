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

	"github.com/eventline/eventline/internal/brokertest"
	"github.com/eventline/eventline/internal/redistest"
)

// server is a running `cart serve` for one test, driven over HTTP.
type server struct {
	t   *testing.T
	url string
}

func startServe(t *testing.T) *server {
	t.Helper()
	return startServeOn(t, "")
}

// startServeOn is startServe with the saga's broker at brokerURL (empty: the
// in-process GoChannel).
func startServeOn(t *testing.T, brokerURL string) *server {
	t.Helper()
	return startServeWith(t, func(c *Config) { c.BrokerURL = brokerURL })
}

// startServeWith is startServe with the configuration changed by edit.
func startServeWith(t *testing.T, edit func(*Config)) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	lines := make(lineWriter, 1)
	cfg := Config{
		StoreURL: filepath.Join(t.TempDir(), "events.db"),
		// A real redis-server, not serve's embedded default.
		RedisURL: redistest.Start(t).URL,
		Addr:     "127.0.0.1:0",
		Stdout:   lines,
		Logger:   slog.New(slog.DiscardHandler),
	}
	edit(&cfg)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, RoleServe, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not shut down")
		}
	})
	select {
	case line := <-lines:
		_, url, _ := strings.Cut(line, " listening on ")
		return &server{t: t, url: url}
	case err := <-done:
		t.Fatalf("serve returned before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not print its URL")
	}
	return nil
}

// do sends a request with an optional JSON body and headers (key, value pairs)
// and decodes a JSON answer into out when out is not nil.
func (s *server) do(method, path, body string, out any, headers ...string) int {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, b, err)
		}
	}
	return res.StatusCode
}

func (s *server) must(method, path, body string, want int, out any, headers ...string) {
	s.t.Helper()
	if code := s.do(method, path, body, out, headers...); code != want {
		s.t.Fatalf("%s %s %s: status %d, want %d", method, path, body, code, want)
	}
}

// eventually polls GET path until ok accepts the decoded answer, or fails the
// test after a deadline. The saga runs asynchronously, so its outcome can only
// be waited for.
func eventually[T any](s *server, path string, ok func(T) bool) T {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last T
	for {
		var v T
		if s.do("GET", path, "", &v) == 200 {
			last = v
			if ok(v) {
				return v
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET %s never reached the expected state; last answer %+v", path, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type orderView struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

type cartView struct {
	Status     string `json:"status"`
	TotalCents int64  `json:"total_cents"`
	Items      []struct {
		ProductID string `json:"product_id"`
		Quantity  int    `json:"quantity"`
	} `json:"items"`
}

type customerView struct {
	Orders        []string `json:"orders"`
	ReservedCents int64    `json:"reserved_cents"`
}

type checkout struct {
	OrderID  string `json:"order_id"`
	Position string `json:"position"`
}

// The order/credit saga end to end through the HTTP API of `cart serve`
// (relay → GoChannel → saga): a checkout within the customer's limit is
// confirmed and reserves credit once, even when the checkout request is
// retried; one over the limit, or by an unknown customer, is rejected and its
// cart reopened (the compensation), ready for new commands.
func TestSagaThroughHTTP(t *testing.T) {
	sagaThroughHTTP(t, startServe(t))
}

// TestSagaThroughHTTPOverNATS is TestSagaThroughHTTP with --broker naming a
// NATS JetStream server (a private one: the app's stream and consumer names
// are fixed). Package relay/broker and sample/saga test the brokers
// themselves, RabbitMQ included.
func TestSagaThroughHTTPOverNATS(t *testing.T) {
	sagaThroughHTTP(t, startServeOn(t, brokertest.StartNATS(t).URL))
}

func sagaThroughHTTP(t *testing.T, s *server) {
	s.must("POST", "/customers", `{"customer_id":"ann","credit_limit_cents":5000}`, 201, nil)
	s.must("POST", "/customers", `{"customer_id":"bob","credit_limit_cents":1000}`, 201, nil)

	t.Run("confirmed", func(t *testing.T) {
		s.t = t
		s.must("POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, 201, nil)
		s.must("POST", "/carts/c1/items", `{"product_id":"book","quantity":2,"unit_price_cents":1299}`, 200, nil)
		var first, retry checkout
		s.must("POST", "/carts/c1/checkout", "", 200, &first, "Idempotency-Key", "checkout-c1")
		s.must("POST", "/carts/c1/checkout", "", 200, &retry, "Idempotency-Key", "checkout-c1")
		if retry != first {
			t.Fatalf("retried checkout answered %+v, first %+v", retry, first)
		}
		o := eventually(s, "/orders/"+first.OrderID+"?after="+first.Position, func(o orderView) bool { return o.Status != "pending" })
		if o.Status != "confirmed" {
			t.Fatalf("order %s is %+v, want confirmed", first.OrderID, o)
		}
		c := eventually(s, "/customers/ann/carts", func(c customerView) bool { return len(c.Orders) == 1 })
		if c.ReservedCents != 2598 {
			t.Fatalf("ann has %d cents reserved, want 2598 (reserved exactly once)", c.ReservedCents)
		}
		var cart cartView
		s.must("GET", "/carts/c1", "", 200, &cart)
		if cart.Status != "checked_out" {
			t.Fatalf("cart c1 is %s, want checked_out", cart.Status)
		}
	})

	for _, c := range []struct{ name, customer, cart, reason string }{
		{"over the limit", "bob", "c2", "credit"},
		{"unknown customer", "zed", "c3", "unknown customer"},
	} {
		t.Run("rejected "+c.name, func(t *testing.T) {
			s.t = t
			s.must("POST", "/carts", `{"customer_id":"`+c.customer+`","cart_id":"`+c.cart+`"}`, 201, nil)
			s.must("POST", "/carts/"+c.cart+"/items", `{"product_id":"lamp","quantity":1,"unit_price_cents":5000}`, 200, nil)
			var co checkout
			s.must("POST", "/carts/"+c.cart+"/checkout", "", 200, &co)
			o := eventually(s, "/orders/"+co.OrderID+"?after="+co.Position, func(o orderView) bool { return o.Status != "pending" })
			if o.Status != "rejected" || !strings.Contains(o.Reason, c.reason) {
				t.Fatalf("order %s is %+v, want rejected with a reason naming %q", co.OrderID, o, c.reason)
			}
			// The compensation reopens the cart with its items; it takes commands again.
			cart := eventually(s, "/carts/"+c.cart, func(c cartView) bool { return c.Status == "open" })
			if len(cart.Items) != 1 || cart.TotalCents != 5000 {
				t.Fatalf("reopened cart %+v, want its one line of 5000 cents back", cart)
			}
			s.must("POST", "/carts/"+c.cart+"/items", `{"product_id":"pen","quantity":1,"unit_price_cents":100}`, 200, nil)
		})
	}
	s.t = t
	var bob customerView
	s.must("GET", "/customers/bob/carts", "", 200, &bob)
	if bob.ReservedCents != 0 {
		t.Fatalf("bob has %d cents reserved after a refusal, want 0", bob.ReservedCents)
	}
}
