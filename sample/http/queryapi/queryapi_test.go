package queryapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// expectCart is the document the carts model must hold for a cart in state s
// at stream version v.
func expectCart(id string, s cart.State, v uint64) schema.Cart {
	c := schema.Cart{CartID: id, CustomerID: s.CustomerID, Status: string(s.Status), Items: []schema.Line{},
		TotalCents: s.TotalCents, Version: v, OrderID: s.OrderID}
	for _, l := range s.Lines {
		c.Items = append(c.Items, schema.Line(l))
	}
	return c
}

func line(product string, quantity int, price int64) schema.Line {
	return schema.Line{ProductID: product, Quantity: quantity, UnitPriceCents: price}
}

func units(product string, n int64) schema.ProductUnits {
	return schema.ProductUnits{ProductID: product, Units: n}
}

func after(p eventstore.Position) string { return "?after=" + url.QueryEscape(p.String()) }

func TestCartLifecycle(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()

	var history []cart.Event
	step := func(cmd cart.Command) {
		t.Helper()
		res := h.cart("c1", cmd)
		history = append(history, res.Events...)
		var got schema.Cart
		h.getJSON("/carts/c1"+after(res.Position), &got)
		if want := expectCart("c1", cart.Decider.Fold(history...), res.Version); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %T%+v:\n got %+v\nwant %+v", cmd, cmd, got, want)
		}
	}
	step(cart.Open{CustomerID: "alice"})
	step(cart.AddItem{ProductID: "apple", Quantity: 2, UnitPriceCents: 1299})
	step(cart.AddItem{ProductID: "pear", Quantity: 1, UnitPriceCents: 500})
	step(cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 1299})
	step(cart.ChangeQuantity{ProductID: "pear", Quantity: 3})
	step(cart.AddItem{ProductID: "fig", Quantity: 4, UnitPriceCents: 25})
	step(cart.RemoveItem{ProductID: "apple"})
	step(cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 1299})
	step(cart.CheckOut{OrderID: "o1"})
	step(cart.Reopen{OrderID: "o1", Reason: "credit refused"})

	// The same facts, spelled out: first-addition order (apple re-added goes
	// last), totals, status and version.
	var got schema.Cart
	h.getJSON("/carts/c1", &got)
	want := schema.Cart{CartID: "c1", CustomerID: "alice", Status: "open", Version: 10, TotalCents: 3*500 + 4*25 + 1299,
		Items: []schema.Line{line("pear", 3, 500), line("fig", 4, 25), line("apple", 1, 1299)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("final cart\n got %+v\nwant %+v", got, want)
	}
	res := h.cart("c1", cart.CheckOut{OrderID: "o2"})
	h.getJSON("/carts/c1"+after(res.Position), &got)
	if got.Status != "checked_out" || got.OrderID != "o2" || got.Version != 11 {
		t.Fatalf("after a second checkout: %+v", got)
	}
	h.wantError("/carts/nope", http.StatusNotFound, httpjson.CodeNotFound)
}

// TestBatchComposes applies a whole log in one batch per projection, so that
// many events of one cart (and of one order) meet in one transaction, where a
// handler's reads do not see the batch's own writes.
func TestBatchComposes(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	histories := map[string][]cart.Event{}
	do := func(id string, cmd cart.Command) {
		histories[id] = append(histories[id], h.cart(id, cmd).Events...)
	}
	for _, id := range []string{"a", "b", "c"} {
		do(id, cart.Open{CustomerID: "cu-" + id})
	}
	for i := range 6 {
		for _, id := range []string{"a", "b", "c"} {
			do(id, cart.AddItem{ProductID: fmt.Sprintf("p%d", i%4), Quantity: i + 1, UnitPriceCents: int64(100 + i%4)})
		}
	}
	do("a", cart.ChangeQuantity{ProductID: "p0", Quantity: 7})
	do("b", cart.RemoveItem{ProductID: "p1"})
	do("a", cart.CheckOut{OrderID: "oa"})
	do("b", cart.CheckOut{OrderID: "ob"})
	do("b", cart.Reopen{OrderID: "ob", Reason: "refused"})
	do("b", cart.CheckOut{OrderID: "ob2"})
	sa := cart.Decider.Fold(histories["a"]...)
	h.order("oa", order.Place{OrderID: "oa", CartID: "a", CustomerID: "cu-a", TotalCents: sa.TotalCents, Items: orderLines(sa.Lines)})
	h.order("oa", order.Confirm{})

	head, err := h.store.Head(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A batch exactly the size of the log is full, and committed, when the
	// last record arrives; the long flush interval never ends a batch early.
	h.startProjectors(projection.Config{BatchSize: int(head.Commit), FlushInterval: time.Minute})
	h.waitActive()
	for _, name := range []string{schema.Carts, schema.Customers, schema.Products, schema.Orders} {
		if n := h.counter("eventline_projection_batches_total", name); n != 1 {
			t.Fatalf("projection %s committed %v batches, want the whole log in 1", name, n)
		}
	}
	for id, hist := range histories {
		var got schema.Cart
		h.getJSON("/carts/"+id, &got)
		if want := expectCart(id, cart.Decider.Fold(hist...), uint64(len(hist))); !reflect.DeepEqual(got, want) {
			t.Fatalf("cart %s\n got %+v\nwant %+v", id, got, want)
		}
	}
	var o schema.Order
	h.getJSON("/orders/oa", &o)
	if o.Status != "confirmed" || o.TotalCents != sa.TotalCents || o.CartID != "a" {
		t.Fatalf("order oa: %+v", o)
	}
	var top queryapi.TopProducts
	h.getJSON("/products/top?limit=100", &top)
	if want := expectTop(map[string]cart.State{"a": sa, "b": cart.Decider.Fold(histories["b"]...),
		"c": cart.Decider.Fold(histories["c"]...)}, 100); !reflect.DeepEqual(top.Products, want) {
		t.Fatalf("top products\n got %+v\nwant %+v", top.Products, want)
	}
}

func orderLines(ls []cart.Line) []order.Line {
	out := make([]order.Line, len(ls))
	for i, l := range ls {
		out[i] = order.Line(l)
	}
	return out
}

// expectTop computes the leaderboard from cart states: units of checked-out
// carts, most first, equal units by descending product id.
func expectTop(carts map[string]cart.State, limit int) []schema.ProductUnits {
	units := map[string]int64{}
	for _, s := range carts {
		if s.Status != cart.StatusCheckedOut {
			continue
		}
		for _, l := range s.Lines {
			units[l.ProductID] += int64(l.Quantity)
		}
	}
	out := []schema.ProductUnits{}
	for p, n := range units {
		out = append(out, schema.ProductUnits{ProductID: p, Units: n})
	}
	sortTop(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func sortTop(ps []schema.ProductUnits) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && less(ps[j], ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func less(a, b schema.ProductUnits) bool {
	if a.Units != b.Units {
		return a.Units > b.Units
	}
	return a.ProductID > b.ProductID
}

func TestLeaderboard(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()

	var top queryapi.TopProducts
	h.getJSON("/products/top", &top)
	if len(top.Products) != 0 {
		t.Fatalf("empty log, top products %+v", top.Products)
	}
	buy := func(cartID, orderID string, lines map[string]int) eventstore.Position {
		h.cart(cartID, cart.Open{CustomerID: "bob"})
		for p, q := range lines {
			h.cart(cartID, cart.AddItem{ProductID: p, Quantity: q, UnitPriceCents: 100})
		}
		return h.cart(cartID, cart.CheckOut{OrderID: orderID}).Position
	}
	buy("c1", "o1", map[string]int{"tea": 5, "milk": 2, "jam": 1})
	buy("c2", "o2", map[string]int{"milk": 4, "bread": 3})
	h.cart("c3", cart.Open{CustomerID: "bob"}) // open carts do not count
	pos := h.cart("c3", cart.AddItem{ProductID: "jam", Quantity: 50, UnitPriceCents: 1}).Position

	h.getJSON("/products/top"+after(pos), &top)
	want := []schema.ProductUnits{units("milk", 6), units("tea", 5), units("bread", 3), units("jam", 1)}
	if !reflect.DeepEqual(top.Products, want) {
		t.Fatalf("top\n got %+v\nwant %+v", top.Products, want)
	}
	h.getJSON("/products/top?limit=2", &top)
	if !reflect.DeepEqual(top.Products, want[:2]) {
		t.Fatalf("top 2: %+v", top.Products)
	}
	// The order of c2 is rejected: the saga reopens the cart and its units
	// leave the board; a product with none left disappears.
	pos = h.cart("c2", cart.Reopen{OrderID: "o2", Reason: "credit refused"}).Position
	h.getJSON("/products/top?limit=10&after="+pos.String(), &top)
	want = []schema.ProductUnits{units("tea", 5), units("milk", 2), units("jam", 1)}
	if !reflect.DeepEqual(top.Products, want) {
		t.Fatalf("after reopen\n got %+v\nwant %+v", top.Products, want)
	}
	for _, bad := range []string{"0", "101", "-1", "abc", "", "1.5", "10x", "99999999999999999999"} {
		h.wantError("/products/top?limit="+url.QueryEscape(bad), http.StatusBadRequest, httpjson.CodeMalformed)
	}
	h.getJSON("/products/top?limit=100", &top)
	h.getJSON("/products/top?limit=1", &top)
	if len(top.Products) != 1 || top.Products[0].ProductID != "tea" {
		t.Fatalf("limit 1: %+v", top.Products)
	}
}

func TestCustomerCartsAndOrders(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()

	h.customer("carol", customer.Register{CreditLimitCents: 10_000})
	h.cart("k2", cart.Open{CustomerID: "carol"}) // opened first, listed first
	h.cart("k1", cart.Open{CustomerID: "carol"})
	h.cart("k1", cart.AddItem{ProductID: "tea", Quantity: 2, UnitPriceCents: 300})
	h.cart("k1", cart.CheckOut{OrderID: "ord-1"})
	pos := h.customer("carol", customer.ReserveCredit{OrderID: "ord-1", AmountCents: 600}).Position

	var got schema.Customer
	h.getJSON("/customers/carol/carts"+after(pos), &got)
	want := schema.Customer{CustomerID: "carol", Carts: []string{"k2", "k1"}, Orders: []string{"ord-1"},
		Registered: true, CreditLimitCents: 10_000, ReservedCents: 600}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("customer\n got %+v\nwant %+v", got, want)
	}
	pos = h.customer("carol", customer.ReleaseCredit{OrderID: "ord-1"}).Position
	h.getJSON("/customers/carol/carts"+after(pos), &got)
	if got.ReservedCents != 0 || got.CreditLimitCents != 10_000 {
		t.Fatalf("after release: %+v", got)
	}
	// A customer known only from a cart is not registered.
	pos = h.cart("k3", cart.Open{CustomerID: "dave"}).Position
	h.getJSON("/customers/dave/carts"+after(pos), &got)
	want = schema.Customer{CustomerID: "dave", Carts: []string{"k3"}, Orders: []string{}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unregistered customer\n got %+v\nwant %+v", got, want)
	}
	h.wantError("/customers/nobody/carts", http.StatusNotFound, httpjson.CodeNotFound)
}

func TestOrderStatus(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()

	place := func(cartID, orderID string) (cart.State, eventstore.Position) {
		var hist []cart.Event
		var res command.Result[cart.Event]
		for _, cmd := range []cart.Command{cart.Open{CustomerID: "erin"},
			cart.AddItem{ProductID: "tea", Quantity: 2, UnitPriceCents: 300},
			cart.AddItem{ProductID: "cup", Quantity: 1, UnitPriceCents: 900},
			cart.CheckOut{OrderID: orderID}} {
			res = h.cart(cartID, cmd)
			hist = append(hist, res.Events...)
		}
		return cart.Decider.Fold(hist...), res.Position
	}
	s, pos := place("k1", "o1")
	var o schema.Order
	h.getJSON("/orders/o1"+after(pos), &o)
	want := schema.Order{OrderID: "o1", CartID: "k1", CustomerID: "erin", Status: "pending",
		Items: []schema.Line{line("tea", 2, 300), line("cup", 1, 900)}, TotalCents: 1500, PlacedAt: o.PlacedAt}
	if !reflect.DeepEqual(o, want) || o.PlacedAt.IsZero() {
		t.Fatalf("pending order\n got %+v\nwant %+v", o, want)
	}
	placedAt := o.PlacedAt
	h.order("o1", order.Place{OrderID: "o1", CartID: "k1", CustomerID: "erin", Items: orderLines(s.Lines), TotalCents: s.TotalCents})
	pos = h.order("o1", order.Confirm{}).Position
	h.getJSON("/orders/o1"+after(pos), &o)
	want.Status = "confirmed"
	if !reflect.DeepEqual(o, want) || !o.PlacedAt.Equal(placedAt) {
		t.Fatalf("confirmed order\n got %+v\nwant %+v", o, want)
	}

	s, _ = place("k2", "o2")
	h.order("o2", order.Place{OrderID: "o2", CartID: "k2", CustomerID: "erin", Items: orderLines(s.Lines), TotalCents: s.TotalCents})
	pos = h.order("o2", order.Reject{Reason: "credit limit exceeded"}).Position
	h.getJSON("/orders/o2"+after(pos), &o)
	if o.Status != "rejected" || o.Reason != "credit limit exceeded" || o.CartID != "k2" {
		t.Fatalf("rejected order: %+v", o)
	}
	pos = h.cart("k2", cart.Reopen{OrderID: "o2", Reason: "credit limit exceeded"}).Position
	var c schema.Cart
	h.getJSON("/carts/k2"+after(pos), &c)
	if c.Status != "open" || c.OrderID != "" || len(c.Items) != 2 {
		t.Fatalf("reopened cart: %+v", c)
	}
	h.wantError("/orders/o404", http.StatusNotFound, httpjson.CodeNotFound)
}

// TestAfterReadsYourWrites appends and queries at once with the returned
// position, on every endpoint: the answer must include the write.
func TestAfterReadsYourWrites(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	h.cart("rw", cart.Open{CustomerID: "fred"})
	for i := 1; i <= 40; i++ {
		res := h.cart("rw", cart.AddItem{ProductID: "tea", Quantity: 1, UnitPriceCents: 10})
		var c schema.Cart
		h.getJSON("/carts/rw"+after(res.Position), &c)
		if c.Version != res.Version || len(c.Items) != 1 || c.Items[0].Quantity != i {
			t.Fatalf("write %d at %s: read %+v", i, res.Position, c)
		}
	}
	for i := range 20 {
		id := fmt.Sprintf("rw%d", i)
		h.cart(id, cart.Open{CustomerID: "fred"})
		h.cart(id, cart.AddItem{ProductID: "cake", Quantity: 1, UnitPriceCents: 10})
		pos := h.cart(id, cart.CheckOut{OrderID: "o" + id}).Position
		var o schema.Order
		h.getJSON("/orders/o"+id+after(pos), &o)
		var cu schema.Customer
		h.getJSON("/customers/fred/carts"+after(pos), &cu)
		var top queryapi.TopProducts
		h.getJSON("/products/top"+after(pos), &top)
		if o.Status != "pending" || len(cu.Orders) != i+1 || len(top.Products) != 1 || top.Products[0].Units != int64(i+1) {
			t.Fatalf("checkout %d: order %+v, customer orders %v, top %+v", i, o, cu.Orders, top.Products)
		}
	}
}

func TestAfterTimeout(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	pos := h.cart("t1", cart.Open{CustomerID: "gina"}).Position
	// The model reaches pos (through the harness's long wait) before the
	// short wait is tried on it, so that a busy machine's slow runner is not
	// taken for a timeout that should not be.
	h.getJSON("/carts/t1"+after(pos), &schema.Cart{})

	h.serve(queryapi.Config{WaitTimeout: time.Second})
	h.getJSON("/carts/t1"+after(pos), &schema.Cart{})
	// A position the log has not reached yet.
	future := eventstore.SeqPosition(pos.Commit + 1000)
	h.wantError("/carts/t1"+after(future), http.StatusGatewayTimeout, httpjson.CodeTimeout)
	h.wantError("/products/top"+after(future), http.StatusGatewayTimeout, httpjson.CodeTimeout)
}

func TestMalformedRequests(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	// Wait for the cart: the queries below without a position do not.
	pos := h.cart("ok", cart.Open{CustomerID: "hank"}).Position
	h.getJSON("/carts/ok"+after(pos), &schema.Cart{})
	long := strings.Repeat("x", 129)
	for _, path := range []string{
		"/carts/" + long, "/orders/" + long, "/customers/" + long + "/carts",
		"/carts/a%20b", "/carts/a%2Fb", "/carts/%C3%A9", "/carts/a%00", "/orders/%25", "/customers/a+b/carts",
		"/carts/ok?after=abc", "/carts/ok?after=-1", "/carts/ok?after=1-2-3", "/carts/ok?after=1.5",
		"/carts/ok?after=" + strings.Repeat("9", 50), "/orders/ok?after=x", "/customers/hank/carts?after=%20",
		"/products/top?after=z", "/carts/ok?%zz", "/products/top?limit=%zz",
	} {
		h.wantError(path, http.StatusBadRequest, httpjson.CodeMalformed)
	}
	// The longest id is fine (and unknown).
	h.wantError("/carts/"+long[:128], http.StatusNotFound, httpjson.CodeNotFound)
	h.getJSON("/carts/ok?after=", &schema.Cart{})
	h.getJSON("/carts/ok?unknown=1", &schema.Cart{})
}

func TestNotReady(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	pos := h.cart("n1", cart.Open{CustomerID: "ivy"}).Position
	for _, path := range []string{"/carts/n1", "/orders/o1", "/customers/ivy/carts", "/products/top"} {
		h.wantError(path, http.StatusServiceUnavailable, httpjson.CodeNotReady)
	}
	// A query with ?after= waits for the first build to be active and reach
	// its position (bounded by WaitTimeout) rather than failing.
	waiting := h.getLater("/carts/n1" + after(pos))
	// Not ready either, naming every read model it serves.
	err := h.api.Ready(h.ctx)
	if !errors.Is(err, queryapi.ErrNotReady) || !errors.Is(err, query.ErrNotReady) {
		t.Fatalf("Ready before any projector: %v, want ErrNotReady", err)
	}
	for _, name := range queryapi.ReadModels {
		if !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("Ready: %v does not name %s", err, name)
		}
	}
	h.startProjectors(projection.Config{})
	if a := <-waiting; a.status != http.StatusOK {
		t.Fatalf("query with ?after= sent before any projector ran: %d %s, want 200", a.status, a.body)
	}
	h.waitActive()
	if err := h.api.Ready(h.ctx); err != nil {
		t.Fatalf("Ready with every read model active: %v", err)
	}
	h.getJSON("/carts/n1?after=1", &schema.Cart{})
}

func TestRedisDown(t *testing.T) {
	h := newHarness(t, redistest.Options{Persistent: true})
	h.startProjectors(projection.Config{})
	h.waitActive()
	pos := h.cart("r1", cart.Open{CustomerID: "jo"}).Position
	h.getJSON("/carts/r1"+after(pos), &schema.Cart{})

	h.redis.Kill()
	for _, path := range []string{"/carts/r1", "/carts/r1" + after(pos), "/orders/o1", "/customers/jo/carts", "/products/top"} {
		h.wantError(path, http.StatusServiceUnavailable, httpjson.CodeUnavailable)
	}
	if err := h.api.Ready(h.ctx); err == nil || errors.Is(err, queryapi.ErrNotReady) {
		t.Fatalf("Ready with Redis down: %v, want the error that Redis cannot be reached", err)
	}
	// Commands do not need Redis; the projector catches up when it returns.
	res := h.cart("r1", cart.AddItem{ProductID: "tea", Quantity: 3, UnitPriceCents: 250})
	h.redis.Restart()
	var c schema.Cart
	h.eventually(func() bool {
		status, _ := h.get("/carts/r1" + after(res.Position))
		return status == http.StatusOK
	})
	h.getJSON("/carts/r1"+after(res.Position), &c)
	want := schema.Cart{CartID: "r1", CustomerID: "jo", Status: "open", Items: []schema.Line{line("tea", 3, 250)},
		TotalCents: 750, Version: 2}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("after restart\n got %+v\nwant %+v", c, want)
	}
}

// TestAfterAlreadyAppliedIsOneRead: a query whose ?after= the model has
// already applied is answered from its one read transaction, which holds the
// checkpoint it compares with after; it sends no checkpoint read of its own
// (a standalone HGET) before it.
func TestAfterAlreadyAppliedIsOneRead(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	h.cart("once", cart.Open{CustomerID: "ida"})
	res := h.cart("once", cart.AddItem{ProductID: "tea", Quantity: 2, UnitPriceCents: 10})
	h.getJSON("/carts/once"+after(res.Position), &schema.Cart{})

	// An API of its own, on a client that counts the commands it sends
	// outside pipelines and transactions.
	counted := redis.NewClient(&redis.Options{Addr: h.redis.Addr})
	t.Cleanup(func() { _ = counted.Close() })
	var cmds commandCounter
	counted.AddHook(&cmds)
	h.rdb = counted
	h.serve(queryapi.Config{})
	for range 10 {
		var c schema.Cart
		h.getJSON("/carts/once"+after(res.Position), &c)
		if c.Version != res.Version || len(c.Items) != 1 || c.Items[0].Quantity != 2 {
			t.Fatalf("read %+v, want the cart at version %d", c, res.Version)
		}
	}
	if n := cmds.count("hget"); n != 0 {
		t.Errorf("10 queries with ?after= an applied position sent %d standalone HGETs, want 0", n)
	}
	// The model behind the position still waits, and answers once it is
	// there: the command goes only after the query's first read, of the
	// model without it, so an answer from that read would lack "cake".
	reads := cmds.readsOf("once")
	later := h.getLater("/carts/once" + after(eventstore.SeqPosition(res.Position.Commit+1)))
	deadline := time.Now().Add(10 * time.Second)
	for cmds.readsOf("once") == reads {
		if time.Now().After(deadline) {
			t.Fatal("the query ?after= the next position never read the cart")
		}
		time.Sleep(time.Millisecond) // polling the counter, not synchronising
	}
	next := h.cart("once", cart.AddItem{ProductID: "cake", Quantity: 1, UnitPriceCents: 30})
	if a := <-later; a.status != http.StatusOK || !strings.Contains(string(a.body), `"cake"`) {
		t.Fatalf("query ?after= the next position (%s): %d %s", next.Position, a.status, a.body)
	}
}

// commandCounter is a redis.Hook that counts the commands a client sends
// one by one, by name, and the pipelines and transactions with a command
// that names a given key.
type commandCounter struct {
	mu     sync.Mutex
	n      map[string]int
	keyHit map[string]int // by the key's last segment
}

// readsOf returns how many pipelines or transactions sent so far had a
// command with an argument whose last ":"-separated segment is id (a key
// of the entry id).
func (c *commandCounter) readsOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keyHit[id]
}

func (c *commandCounter) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int{}
		}
		c.n[cmd.Name()]++
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ids := map[string]bool{}
		for _, cmd := range cmds {
			for _, a := range cmd.Args()[1:] {
				if k, ok := a.(string); ok {
					if i := strings.LastIndex(k, ":"); i >= 0 {
						ids[k[i+1:]] = true
					}
				}
			}
		}
		c.mu.Lock()
		if c.keyHit == nil {
			c.keyHit = map[string]int{}
		}
		for id := range ids {
			c.keyHit[id]++
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}
