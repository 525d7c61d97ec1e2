package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/eventline/eventline/sample/app"
)

// Environment variables of the browser test.
const (
	// envRequireChromium=1 makes a missing Chromium a failure (CI), not a skip.
	envRequireChromium = "EVENTLINE_REQUIRE_CHROMIUM"
	// envScreenshots names a directory (relative to the repository root) to
	// write shop.png and operations.png into, e.g. "docs".
	envScreenshots = "EVENTLINE_SCREENSHOTS"
)

const adminToken = "test-admin-token"

// xss is a product id that would run script if the page put it into HTML.
const xss = `<img src=x onerror=alert(1)>`

// TestBrowserStory clicks through the sample in headless Chromium against a
// real "cart serve" (SQLite, embedded Redis, saga): a customer, a cart,
// items, a checkout confirmed live; a checkout beyond the credit limit
// rejected, its cart reopened; the operations view during a burst of
// commands; a forced rebuild from the page while the shop keeps answering;
// and user data that looks like markup shown as text.
func TestBrowserStory(t *testing.T) {
	chromium := findChromium(t)
	base := startServe(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless, no first run, no background networking
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun, chromedp.WindowSize(1280, 1000),
		// Chromium prints its DevTools address once started; on a loaded
		// 2-core machine that took longer than chromedp's default 20 s.
		chromedp.WSURLReadTimeout(90*time.Second))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 150*time.Second)
	defer cancel()

	var dialogs atomic.Int32
	var exMu sync.Mutex
	var exceptions []string
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			dialogs.Add(1)
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		case *runtime.EventExceptionThrown:
			exMu.Lock()
			exceptions = append(exceptions, e.ExceptionDetails.Error())
			exMu.Unlock()
		}
	})
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			var notice string
			_ = chromedp.Run(ctx, chromedp.Evaluate(`(document.querySelector('#notice')||{}).textContent`, &notice))
			t.Fatalf("%s: %v (page notice: %q)", what, err, notice)
		}
	}
	waitFor := func(what, expr string) {
		t.Helper()
		run("wait for "+what, chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(30*time.Second)))
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		run("read "+sel, chromedp.Evaluate(`(document.querySelector(`+strconv.Quote(sel)+`)||{}).textContent||''`, &s))
		return s
	}

	// The shop: a customer with a credit limit of 50.00, a cart, items.
	run("open the shop", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#register", chromedp.ByQuery))
	run("register", chromedp.SetValue("#customer-id", "ann", chromedp.ByQuery),
		chromedp.SetValue("#credit-limit", "5000", chromedp.ByQuery), chromedp.Click("#register", chromedp.ByQuery))
	waitFor("the customer's credit", `document.querySelector('#customer-view').textContent.includes('50.00')`)
	run("open a cart", chromedp.Click("#open-cart", chromedp.ByQuery))
	waitFor("the open cart", `document.querySelector('#cart-status').textContent === 'open'`)
	addItem := func(product, qty, price string) {
		t.Helper()
		// The form is submitted from the keyboard: Enter in the last field.
		run("add "+product, chromedp.SetValue("#product-id", product, chromedp.ByQuery),
			chromedp.SetValue("#quantity", qty, chromedp.ByQuery), chromedp.SetValue("#unit-price", price, chromedp.ByQuery),
			chromedp.SendKeys("#unit-price", "\r", chromedp.ByQuery))
	}
	addItem("apple", "2", "1299")
	waitFor("apple in the cart", `document.querySelector('#cart-items tbody').textContent.includes('apple')`)
	addItem("pear", "1", "450")
	waitFor("pear in the cart", `document.querySelector('#cart-items tbody').textContent.includes('pear')`)
	run("remove pear", chromedp.Click(`button[aria-label="Remove pear"]`, chromedp.ByQuery))
	waitFor("pear removed", `!document.querySelector('#cart-items tbody').textContent.includes('pear') && document.querySelector('#cart-total').textContent === '25.98'`)

	// Every command shows the position it was written at and when the read
	// model reached it.
	var writes [][]string
	run("read the consistency table", chromedp.Evaluate(`Array.from(document.querySelectorAll('#writes tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))`, &writes))
	if len(writes) != 5 {
		t.Fatalf("consistency table has %d rows, want 5 (register, open, add, add, remove): %q", len(writes), writes)
	}
	for _, w := range writes {
		if _, err := strconv.ParseUint(w[1], 10, 64); err != nil || !strings.HasPrefix(w[2], "after ") || !strings.HasSuffix(w[2], " ms") {
			t.Errorf("consistency row %q: want a position and \"after N ms\"", w)
		}
	}

	// Checkout within the limit: the order goes pending → confirmed live.
	run("check out", chromedp.Click("#checkout", chromedp.ByQuery))
	waitFor("the order confirmed", `document.querySelector('#order-status').textContent === 'confirmed'`)
	waitFor("the saga's events", `document.querySelector('#saga').textContent.includes('order.confirmed')`)
	if s := text("#saga"); !strings.Contains(s, "customer.credit_reserved") {
		t.Errorf("saga progress %q lacks customer.credit_reserved", s)
	}
	waitFor("the credit reserved", `document.querySelector('#reserved').textContent === '25.98'`)
	screenshot(t, ctx, "shop.png")

	// Checkout beyond the credit limit: rejected with the reason, the cart
	// reopened by the saga's compensation.
	run("open a second cart", chromedp.Click("#open-cart", chromedp.ByQuery))
	waitFor("the second cart", `document.querySelector('#cart-status').textContent === 'open' && document.querySelector('#order-id').textContent === 'none'`)
	addItem("television", "1", "99900")
	waitFor("the television", `document.querySelector('#cart-items tbody').textContent.includes('television')`)
	run("check out beyond the limit", chromedp.Click("#checkout", chromedp.ByQuery))
	waitFor("the order rejected", `document.querySelector('#order-status').textContent === 'rejected'`)
	waitFor("the cart reopened", `document.querySelector('#cart-status').textContent === 'open' && document.querySelector('#saga').textContent.includes('cart.reopened')`)
	if s := text("#order-reason"); !strings.Contains(s, "credit") {
		t.Errorf("rejection reason %q does not mention credit", s)
	}

	// User data that looks like markup is text.
	addItem(xss, "1", "100")
	waitFor("the refusal", `document.querySelector('#notice').textContent.includes(`+strconv.Quote(xss)+`)`)
	assertNoMarkup(t, ctx, &dialogs)

	// The operations view: every projection's active build, live.
	run("open the operations view", chromedp.Navigate(base+"/ops"))
	waitFor("the carts row", `document.querySelector('#projections tr[data-projection="carts"][data-active="true"]') !== null`)
	waitFor("the tail", `document.querySelectorAll('#tail tbody tr').length > 5`)
	checkpoint := func() (cp, head uint64) {
		t.Helper()
		var s []string
		run("read the carts row", chromedp.Evaluate(`[document.querySelector('#projections tr[data-projection="carts"][data-active="true"] .checkpoint').textContent, document.querySelector('#head').textContent]`, &s))
		cp, _ = strconv.ParseUint(s[0], 10, 64)
		head, _ = strconv.ParseUint(s[1], 10, 64)
		return cp, head
	}

	// A burst of commands: the checkpoints and the lag the page shows move
	// while it runs. It runs until the page has shown both (or a deadline).
	burstCtx, stopBurst := context.WithTimeout(ctx, 60*time.Second)
	burstDone := make(chan error, 1)
	var sent atomic.Int64
	go func() { burstDone <- burst(burstCtx, base, 4, &sent) }()
	seen := map[uint64]bool{}
	maxLag := 0
	for len(seen) < 3 || maxLag == 0 || sent.Load() < 600 {
		if burstCtx.Err() != nil {
			t.Fatalf("during the burst (%d commands) the page showed %d checkpoint values and a largest lag of %d; want ≥ 3 values and a lag > 0", sent.Load(), len(seen), maxLag)
		}
		cp, _ := checkpoint()
		seen[cp] = true
		maxLag, _ = strconv.Atoi(text("#max-lag"))
		select { // the page samples every 500 ms; this only paces the reads
		case <-burstCtx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	stopBurst()
	if err := <-burstDone; err != nil {
		t.Fatalf("burst: %v", err)
	}
	head := headOf(t, base)
	waitFor("the projections caught up", fmt.Sprintf(`Array.from(document.querySelectorAll('#projections tr[data-active="true"]')).every(r => r.querySelector('.checkpoint').textContent === '%d' && r.querySelector('.lag').textContent === '0')`, head))
	t.Logf("burst: %d commands, checkpoint values seen %d, largest lag shown %d events, head %d", sent.Load(), len(seen), maxLag, head)

	// A forced rebuild from the page: refused with a wrong token, then it
	// runs, reports progress and switches while the shop keeps answering.
	run("wrong token", chromedp.SetValue("#admin-token", "nope", chromedp.ByQuery),
		chromedp.SetValue("#rebuild-projection", "carts", chromedp.ByQuery), chromedp.Click("#rebuild", chromedp.ByQuery))
	waitFor("the refusal", `document.querySelector('#notice').textContent.includes('unauthorized')`)
	shopCtx, stopShop := context.WithCancel(ctx)
	shopErr := make(chan error, 1)
	go func() { shopErr <- readCarts(shopCtx, base) }()
	run("rebuild carts", chromedp.SetValue("#admin-token", adminToken, chromedp.ByQuery), chromedp.Click("#rebuild", chromedp.ByQuery))
	waitFor("the rebuild done", `(document.querySelector('.job[data-done="true"] .job-state')||{}).textContent === 'done: build 2g1 is active'`)
	waitFor("the new build active", `document.querySelector('#projections tr[data-projection="carts"][data-active="true"]').dataset.build === '2g1'`)
	stopShop()
	if err := <-shopErr; err != nil {
		t.Errorf("the shop failed during the rebuild: %v", err)
	}
	var samples []string
	run("read the rebuild's progress", chromedp.Evaluate(`Array.from(document.querySelectorAll('.job .samples li')).map(li => li.textContent)`, &samples))
	if len(samples) < 2 || !strings.HasPrefix(samples[0], "catching_up: 0 / ") || !strings.Contains(samples[0], "(0%)") ||
		!strings.Contains(samples[len(samples)-1], "(100%)") {
		t.Errorf("rebuild progress %q: want catching_up from 0%% first and 100%% last", samples)
	}
	screenshot(t, ctx, "operations.png")

	// The tail's filters, and markup in a filter shown as text.
	run("filter by type", chromedp.SetValue("#tail-type", "cart.op", chromedp.ByQuery), chromedp.SendKeys("#tail-type", "\r", chromedp.ByQuery))
	waitFor("cart.opened records only", `(() => { const rows = Array.from(document.querySelectorAll('#tail tbody tr')); return rows.length > 0 && rows.every(r => r.cells[4].textContent === 'cart.opened'); })()`)
	run("filter by stream", chromedp.Evaluate(`document.querySelector('#tail-type').value = ''`, nil), chromedp.SetValue("#tail-stream", xss, chromedp.ByQuery),
		chromedp.SendKeys("#tail-stream", "\r", chromedp.ByQuery))
	waitFor("the filter echoed", `document.querySelector('#tail-filter').textContent.includes(`+strconv.Quote(xss)+`)`)
	assertNoMarkup(t, ctx, &dialogs)

	exMu.Lock()
	defer exMu.Unlock()
	if len(exceptions) > 0 {
		t.Errorf("uncaught exceptions in the page: %q", exceptions)
	}
}

// assertNoMarkup checks that no <img> was created and no dialog opened.
func assertNoMarkup(t *testing.T, ctx context.Context, dialogs *atomic.Int32) {
	t.Helper()
	var imgs int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('img').length`, &imgs)); err != nil {
		t.Fatal(err)
	}
	if imgs != 0 || dialogs.Load() != 0 {
		t.Fatalf("user data became markup: %d <img> elements, %d dialogs", imgs, dialogs.Load())
	}
}

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(envRequireChromium) == "1" {
		t.Fatalf("%s=1 and no chromium in PATH (apt-get install chromium)", envRequireChromium)
	}
	t.Skipf("no chromium in PATH; set %s=1 to make this a failure", envRequireChromium)
	return ""
}

// lineWriter sends the first line written to it.
type lineWriter struct {
	once sync.Once
	buf  bytes.Buffer
	mu   sync.Mutex
	line chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if i := bytes.IndexByte(w.buf.Bytes(), '\n'); i >= 0 {
		w.once.Do(func() { w.line <- string(w.buf.Bytes()[:i]) })
	}
	return len(p), nil
}

// startServe runs "cart serve" in process on a fresh SQLite file and the
// embedded Redis, with an admin token, and returns its base URL.
func startServe(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{line: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.RoleServe, app.Config{
			StoreURL: filepath.Join(t.TempDir(), "events.db"), Addr: "127.0.0.1:0", AdminToken: adminToken,
			Stdout: out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case line := <-out.line:
		_, url, ok := strings.Cut(line, " listening on ")
		if !ok {
			t.Fatalf("serve printed %q", line)
		}
		return url
	case err := <-done:
		t.Fatalf("serve stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start in 30 s")
	}
	return ""
}

// burst runs command pairs (open a cart, add an item) over HTTP from
// several workers until ctx ends, counting the commands in sent.
func burst(ctx context.Context, base string, workers int, sent *atomic.Int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("burst-%d-%d", w, i)
				if err := post(base+"/carts", `{"customer_id":"bob","cart_id":"`+id+`"}`, http.StatusCreated); err != nil {
					errs <- err
					return
				}
				if err := post(base+"/carts/"+id+"/items", `{"product_id":"tea","quantity":1,"unit_price_cents":300}`, http.StatusOK); err != nil {
					errs <- err
					return
				}
				sent.Add(2)
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs)
}

func post(url, body string, want int) error {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return nil
}

// readCarts reads a cart and writes to another, reading it back with
// ?after=, until ctx ends: any answer but 200 is an error.
func readCarts(ctx context.Context, base string) error {
	for i := 0; ctx.Err() == nil; i++ {
		id := "during-rebuild-" + strconv.Itoa(i)
		resp, err := http.Post(base+"/carts", "application/json", strings.NewReader(`{"customer_id":"cy","cart_id":"`+id+`"}`))
		if err != nil {
			return err
		}
		var res struct{ Position string }
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("open %s: %d %v", id, resp.StatusCode, err)
		}
		for _, path := range []string{"/carts/" + id + "?after=" + res.Position, "/carts/burst-0-0"} {
			r, err := http.Get(base + path)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %d %s", path, r.StatusCode, b)
			}
		}
	}
	return nil
}

// headOf opens a cart and returns the position it was written at, the
// head of the log once the burst is over.
func headOf(t *testing.T, base string) uint64 {
	t.Helper()
	resp, err := http.Post(base+"/carts", "application/json", strings.NewReader(`{"customer_id":"dee"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct{ Position string }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(res.Position, 10, 64)
	if err != nil {
		t.Fatalf("position %q: %v", res.Position, err)
	}
	return n
}

// screenshot writes a PNG of the page into $EVENTLINE_SCREENSHOTS, when set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		return
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", "..", dir) // the repository root, from sample/http/web
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", filepath.Join(dir, name))
}
