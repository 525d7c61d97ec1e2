package app

import (
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// blackHole accepts connections and never answers: a Redis that hangs
// (paused, or behind a partition that drops packets), the fault where a
// breaker matters most, since every call waits out its client timeout.
func blackHole(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "redis://" + ln.Addr().String()
}

// BenchmarkQueryWhileRedisHangs measures GET /carts/{id} of query-api while
// its Redis hangs: with the breaker open (it answers 503 at once) and with a
// breaker that never opens (each query waits out the Redis client's
// timeouts). It reports the p50 and p99 latency of the answers.
func BenchmarkQueryWhileRedisHangs(b *testing.B) {
	for _, c := range []struct {
		name     string
		failures int
	}{{"breaker-open", 3}, {"no-breaker", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			url, _ := startRole(b, RoleQueryAPI, Config{
				RedisURL: blackHole(b), BreakerFailures: c.failures, BreakerOpenFor: time.Hour,
			})
			client := &http.Client{Timeout: time.Minute}
			get := func() (int, time.Duration) {
				start := time.Now()
				res, err := client.Get(url + "/carts/c1")
				if err != nil {
					b.Fatal(err)
				}
				// Read to the end, or the client closes the connection and
				// every query pays a new TCP connection (a dial, an accept
				// and a goroutine on each side), as clients with keep-alive
				// do not.
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				return res.StatusCode, time.Since(start)
			}
			if c.failures < 100 {
				// Open it: the first queries wait out their timeouts.
				for i := 0; i < c.failures; i++ {
					get()
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				status, d := get()
				if status != http.StatusServiceUnavailable {
					b.Fatalf("status %d, want 503", status)
				}
				lat = append(lat, d)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds()), "p99-µs")
		})
	}
}
