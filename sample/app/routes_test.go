package app

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/eventline/eventline/sample/http/httpjson"
)

// Every role's server answers an unknown route or a wrong method with the
// JSON error body of every other error: the command and query APIs, the web
// page and the ops endpoints share one mux.
func TestUnknownRoutesAndWrongMethodsAnswerJSON(t *testing.T) {
	cfg := Config{StoreURL: filepath.Join(t.TempDir(), "events.db")}
	url, _ := startRole(t, RoleServe, cfg)
	c := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/no/such/route", http.StatusNotFound, httpjson.CodeNotFound, ""},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
		{http.MethodPut, "/metrics", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/carts/c1", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/carts/c1/checkout", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "POST"},
		{http.MethodPatch, "/customers", http.StatusMethodNotAllowed, httpjson.CodeMethodNotAllowed, "POST"},
	} {
		req, err := http.NewRequest(tc.method, url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		what := tc.method + " " + tc.path
		var e httpjson.Body
		if res.StatusCode != tc.status || json.Unmarshal(b, &e) != nil || e.Code != tc.code || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with code %q", what, res.StatusCode, b, tc.status, tc.code)
		}
		if got := res.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s: Allow %q, want %q", what, got, tc.allow)
		}
	}
}
