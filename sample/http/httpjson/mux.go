package httpjson

import "net/http"

// Mux returns a handler that serves mux and answers a request that no
// pattern of mux matches with the JSON error body: 404 not_found, or, when
// the path matches a pattern for other methods, 405 method_not_allowed with
// the Allow header mux computes. (http.ServeMux answers those in plain
// text.) Redirects to a canonical path are mux's own.
func Mux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// Let mux's own error handler decide the status and the Allow
		// header, and answer them in JSON.
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Values("Allow"); len(allow) > 0 {
				w.Header()["Allow"] = allow
			}
			Write(w, NewError(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				"method "+r.Method+" is not allowed here"))
		case http.StatusNotFound, 0:
			Write(w, NewError(http.StatusNotFound, CodeNotFound, "no such route"))
		default:
			// Not an error mux decided (say, a CONNECT redirect): pass it on.
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// recorder keeps the status and headers a handler writes and drops its body.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
