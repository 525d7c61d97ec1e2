package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/pgtest"
)

// TestTwoCommandAPIsOnOnePostgres runs two command-api processes on one
// PostgreSQL database while 64 clients add items to the same 8 carts through
// both at once. No acknowledged command may be lost or doubled: each
// acknowledged item is in its cart's stream exactly once, and nothing else
// is. It needs a PostgreSQL server (see internal/pgtest).
func TestTwoCommandAPIsOnOnePostgres(t *testing.T) {
	dbURL := pgtest.Database(t) // dropped after the processes stopped
	storeURL := "EVENTLINE_STORE_URL=" + dbURL
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	apis := []*proc{start(t, "command-api", storeURL), start(t, "command-api", storeURL)}

	const carts, clients, adds = 8, 64, 12
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(base, path string, body any) (int, error) {
		b, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(string(b)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for c := range carts {
		if code, err := post(apis[c%2].url, "/carts", map[string]string{"customer_id": "ann", "cart_id": fmt.Sprintf("c%d", c)}); err != nil || code != http.StatusCreated {
			t.Fatalf("open cart c%d: %d, %v", c, code, err)
		}
	}
	var mu sync.Mutex
	acked := map[string]string{} // product id → cart id
	refused := map[string]bool{}
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			cartID := fmt.Sprintf("c%d", cl%carts)
			for k := range adds {
				product := fmt.Sprintf("p-%d-%d", cl, k)
				code, err := post(apis[(cl+k)%2].url, "/carts/"+cartID+"/items",
					map[string]any{"product_id": product, "quantity": 1, "unit_price_cents": 100})
				mu.Lock()
				switch {
				case err == nil && code == http.StatusOK:
					acked[product] = cartID
				case err == nil && code == http.StatusConflict:
					refused[product] = true // the handler ran out of attempts: definitely not written
				default:
					t.Errorf("add %s to %s: %d, %v", product, cartID, code, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d adds acknowledged, %d refused as conflicts", len(acked), len(refused))

	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	rows, err := db.Query(ctx, `SELECT s.name, e.data FROM eventline.events e
		JOIN eventline.streams s ON s.id = e.stream WHERE e.type = 'cart.item_added' ORDER BY e.position`)
	if err != nil {
		t.Fatal(err)
	}
	inLog := map[string]int{}
	var stream string
	var data []byte
	if _, err := pgx.ForEachRow(rows, []any{&stream, &data}, func() error {
		var item struct {
			ProductID string `json:"product_id"`
		}
		if err := json.Unmarshal(data, &item); err != nil {
			return err
		}
		inLog[item.ProductID]++
		if want := "cart-" + acked[item.ProductID]; stream != want {
			t.Errorf("item %s is in stream %s, acknowledged for %s", item.ProductID, stream, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for product := range acked {
		if n := inLog[product]; n != 1 {
			t.Errorf("acknowledged item %s is %d times in the log, want once", product, n)
		}
	}
	for product, n := range inLog {
		if _, ok := acked[product]; !ok {
			t.Errorf("item %s is in the log %d times but was never acknowledged (refused: %v)", product, n, refused[product])
		}
	}
}
