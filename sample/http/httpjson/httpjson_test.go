package httpjson_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/sample/http/httpjson"
)

func TestMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, "thing "+r.PathValue("id"))
	})
	mux.HandleFunc("POST /things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /dir/", func(w http.ResponseWriter, r *http.Request) {})
	h := httpjson.Mux(mux)
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
		body         string
	}{
		{"GET", "/things/7", 200, "", "", "thing 7"},
		{"GET", "/nothing", 404, httpjson.CodeNotFound, "", ""},
		{"DELETE", "/things/7", 405, httpjson.CodeMethodNotAllowed, "GET, HEAD, POST", ""},
		{"GET", "/dir", 307, "", "", ""}, // mux's own redirect to /dir/
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		what := c.method + " " + c.path
		if w.Code != c.status || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s: %d Allow %q, want %d Allow %q", what, w.Code, w.Header().Get("Allow"), c.status, c.allow)
		}
		if c.body != "" && w.Body.String() != c.body {
			t.Errorf("%s: body %q, want %q", what, w.Body, c.body)
		}
		if c.code == "" {
			continue
		}
		var b httpjson.Body
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || b.Code != c.code || b.Error == "" {
			t.Errorf("%s: body %q, want code %q", what, w.Body, c.code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", what, ct)
		}
	}
}

func TestClassify(t *testing.T) {
	errGone := errors.New("pkg: gone")
	errBusy := errors.New("pkg: busy")
	errOwn := errors.New("written for the client")
	mappings := []httpjson.Mapping{
		{Target: errGone, Status: 404, Code: httpjson.CodeNotFound, Message: "not found"},
		{Match: func(err error) bool { return errors.Is(err, errBusy) }, Status: 503, Code: httpjson.CodeUnavailable},
		{Target: errOwn, Status: 422, Code: httpjson.CodeRuleViolated},
	}
	for _, c := range []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{fmt.Errorf("stream x-1: %w", errGone), 404, httpjson.CodeNotFound, "not found"},
		{fmt.Errorf("dial: %w", errBusy), 503, httpjson.CodeUnavailable, "a backing service is unavailable; retry later"},
		{errOwn, 422, httpjson.CodeRuleViolated, "written for the client"},
		{errors.New("pkg: disk on fire"), 500, httpjson.CodeInternal, "internal error"},
		{fmt.Errorf("x: %w", httpjson.NewError(418, "teapot", "short")), 418, "teapot", "short"},
	} {
		e := httpjson.Classify(c.err, mappings)
		if e.Status != c.status || e.Code != c.code || e.Message != c.msg {
			t.Errorf("%v: %d %s %q, want %d %s %q", c.err, e.Status, e.Code, e.Message, c.status, c.code, c.msg)
		}
		if c.status != 418 && !errors.Is(e, c.err) {
			t.Errorf("%v: the cause is lost", c.err)
		}
	}
	w := httptest.NewRecorder()
	httpjson.WriteError(w, fmt.Errorf("dial: %w", errBusy), mappings)
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("503: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
}
