package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// generatorName is what the table says about the load generator.
const generatorName = "Go closed loop (this command): N goroutines, one http.Client, keep-alive"

// newHTTPClient returns a client that keeps a connection per closed-loop
// client alive, so that the loop never measures connection setup.
func newHTTPClient(clients int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        2 * clients,
			MaxIdleConnsPerHost: 2 * clients,
			DisableCompression:  true,
			IdleConnTimeout:     time.Minute,
		},
		Timeout: 30 * time.Second,
	}
}

// do sends a request and reads the whole answer; a status other than want is
// an error carrying the body.
func do(ctx context.Context, c *http.Client, method, url, body string, want int) ([]byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return b, fmt.Errorf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	return b, nil
}

// loopResult is what a closed loop did.
type loopResult struct {
	ops     int
	errors  int
	elapsed time.Duration
	lat     []time.Duration
	// firstErr is the first error seen, for the table's note.
	firstErr error
}

func (r loopResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// p returns the q-quantile (0..1) of the latencies in milliseconds.
func (r loopResult) p(q float64) float64 { return percentile(r.lat, q) }

func percentile(lat []time.Duration, q float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	i := min(len(lat)-1, int(float64(len(lat))*q))
	return float64(lat[i]) / float64(time.Millisecond)
}

// closedLoop runs clients goroutines for d, each calling op and timing it,
// and returns the merged, sorted latencies. Every goroutine ends before it
// returns.
func closedLoop(ctx context.Context, clients int, d time.Duration, op func(ctx context.Context, client, i int) error) loopResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return runClients(ctx, clients, func(ctx context.Context, client int, rec func(time.Duration, error)) {
		for i := 0; ctx.Err() == nil; i++ {
			t0 := time.Now()
			err := op(ctx, client, i)
			if ctx.Err() != nil {
				return // cut short by the end of the run: not a result
			}
			rec(time.Since(t0), err)
		}
	})
}

// runClients runs body in clients goroutines; body reports each operation
// through rec. It returns when every goroutine has returned.
func runClients(ctx context.Context, clients int, body func(ctx context.Context, client int, rec func(time.Duration, error))) loopResult {
	per := make([]loopResult, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			r := &per[c]
			body(ctx, c, func(d time.Duration, err error) {
				r.lat = append(r.lat, d)
				r.ops++
				if err != nil {
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
			})
		})
	}
	wg.Wait()
	res := loopResult{elapsed: time.Since(start)}
	for _, r := range per {
		res.ops += r.ops
		res.errors += r.errors
		res.lat = append(res.lat, r.lat...)
		if res.firstErr == nil {
			res.firstErr = r.firstErr
		}
	}
	slices.Sort(res.lat)
	return res
}

// errNote summarises a loop's errors for the table.
func (r loopResult) errNote() string {
	if r.errors == 0 {
		return ""
	}
	msg := r.firstErr.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return fmt.Sprintf("%d errors, first: %s", r.errors, msg)
}
