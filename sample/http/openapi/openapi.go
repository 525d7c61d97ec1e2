// Package openapi holds the OpenAPI 3.1 document of the sample's HTTP APIs
// (commands, queries, the web page's JSON endpoints, operations) and serves
// it. The document is openapi.json in this directory, embedded in the binary;
// a test in sample/app drives every endpoint and validates each request and
// response against it, so it cannot drift from the code.
package openapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.json
var document []byte

// Path is where Mount serves the document.
const Path = "/openapi.json"

// Document returns the OpenAPI document (JSON). The caller must not modify
// it.
func Document() []byte { return document }

// Handler serves the document as application/json.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(document)))
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(document)
	})
}

// Mount registers GET /openapi.json on mux.
func Mount(mux *http.ServeMux) { mux.Handle("GET "+Path, Handler()) }
