package commandapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// countingReader counts the bytes the client took from the body to send.
type countingReader struct {
	r    io.Reader
	read *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// An oversized body announced with "Expect: 100-continue" (curl's default for
// large uploads) is refused with 413 on its declared length: the server never
// says "100 Continue", so the client never sends the body and reads a clean
// answer instead of a reset connection.
func TestOversizedBodyWithExpectContinue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := commandapi.DecodeOpenCart(w, r); err != nil {
			commandapi.WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	// The client waits for the server's word as long as it takes, so what it
	// sends depends on the server alone.
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	for _, size := range []int{httpjson.MaxBodyBytes + 1, 4 << 20} {
		var sent atomic.Int64
		var continued atomic.Bool
		body := `{"customer_id":"` + strings.Repeat("a", size) + `"}`
		req, err := http.NewRequest(http.MethodPost, srv.URL, countingReader{strings.NewReader(body), &sent})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got100Continue: func() { continued.Store(true) },
		}))
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%d-byte body: %v (the server told the client to continue: %v; %d bytes sent)",
				len(body), err, continued.Load(), sent.Load())
		}
		var e httpjson.Body
		decErr := json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || decErr != nil || e.Code != httpjson.CodeTooLarge {
			t.Errorf("%d-byte body: %d %+v (%v), want 413 %s", len(body), res.StatusCode, e, decErr, httpjson.CodeTooLarge)
		}
		if continued.Load() || sent.Load() != 0 {
			t.Errorf("%d-byte body: the server said 100 Continue (%v) and the client sent %d bytes; want a refusal before the body",
				len(body), continued.Load(), sent.Load())
		}
	}
}
