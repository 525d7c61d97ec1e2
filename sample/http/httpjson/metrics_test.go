package httpjson_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventline/eventline/sample/http/httpjson"
)

func TestMetricsRoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := httpjson.NewMetrics("query", reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	m.HandleFunc(mux, "GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			httpjson.Write(w, httpjson.NewError(http.StatusNotFound, httpjson.CodeNotFound, "no such thing"))
			return
		}
		// No WriteHeader: the implicit 200 counts.
		_, _ = w.Write([]byte("thing\n"))
	})
	m.HandleFunc(mux, "GET /stream", func(w http.ResponseWriter, r *http.Request) {
		// An event stream flushes through the wrapper.
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the metrics wrapper: %v", err)
		}
	})
	// A second API of the same name in the same registry shares the series.
	again, err := httpjson.NewMetrics("query", reg)
	if err != nil {
		t.Fatalf("second Metrics of the same api: %v", err)
	}
	again.HandleFunc(mux, "GET /other", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	// Another API in the same registry differs by its label.
	cmd, err := httpjson.NewMetrics("command", reg)
	if err != nil {
		t.Fatalf("Metrics of another api: %v", err)
	}
	cmd.HandleFunc(mux, "POST /things", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, req := range []struct{ method, path string }{
		{"GET", "/things/a"}, {"GET", "/things/b"}, {"GET", "/things/missing"}, {"GET", "/stream"},
		{"GET", "/other"}, {"POST", "/things"},
	} {
		r, err := http.NewRequest(req.method, srv.URL+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
	}
	// Each route's 200 series exists from the start, at 0.
	want := `
# HELP eventline_http_requests_total HTTP requests answered, by API, route and status.
# TYPE eventline_http_requests_total counter
eventline_http_requests_total{api="command",route="POST /things",status="200"} 0
eventline_http_requests_total{api="command",route="POST /things",status="201"} 1
eventline_http_requests_total{api="query",route="GET /other",status="200"} 0
eventline_http_requests_total{api="query",route="GET /other",status="418"} 1
eventline_http_requests_total{api="query",route="GET /stream",status="200"} 1
eventline_http_requests_total{api="query",route="GET /things/{id}",status="200"} 2
eventline_http_requests_total{api="query",route="GET /things/{id}",status="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eventline_http_requests_total"); err != nil {
		t.Error(err)
	}
	// One duration series per route, never per path.
	if n, err := testutil.GatherAndCount(reg, "eventline_http_request_duration_seconds"); err != nil || n != 4 {
		t.Errorf("duration series: %d, %v; want 4 (one per route)", n, err)
	}
}

func TestMetricsConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Something else already uses the name with other labels.
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eventline_http_requests_total", Help: "other"}, []string{"path"}))
	if _, err := httpjson.NewMetrics("query", reg); err == nil {
		t.Fatal("NewMetrics registered over a different metric of the same name")
	}
	// Without a registry the metrics still count.
	m, err := httpjson.NewMetrics("query", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Route("GET /x", http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d through the wrapper, want 404", rec.Code)
	}
}
