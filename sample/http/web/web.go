package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/http/httpjson"
)

//go:embed assets
var assets embed.FS

// DefaultInterval is how often the event stream samples the projections'
// status and the tail when Config.Interval is zero.
const DefaultInterval = 500 * time.Millisecond

// Config configures a Handler.
type Config struct {
	// Redis holds the read models, the projections' status and the tail.
	// Required.
	Redis redis.UniversalClient
	// Store, when set, gives the status a fresh head of the log and makes
	// rebuilds possible from the page ("cart serve"). nil (the query API
	// role, which never opens the store) shows the head the runners last
	// wrote, and a rebuild from the page is recorded in Redis for a
	// projector to run (projection.RequestRebuild).
	Store eventstore.Store
	// Projections are the application's projections: their names are shown
	// even before a runner wrote their status, and they are what a rebuild
	// builds.
	Projections []projection.Projection
	// CommandURL, when set, is the base URL of the command API: the command
	// routes are forwarded there, so the page posts to its own origin. Leave
	// it empty when the command API is mounted on the same mux.
	CommandURL string
	// ProxyCommands mounts the command routes even without CommandURL; they
	// then answer 503, telling the user to configure it. Set it for the query
	// API role.
	ProxyCommands bool
	// AdminToken enables the actions that change things (a rebuild); each
	// must carry it as "Authorization: Bearer <token>". Empty disables them.
	AdminToken string
	// Interval is how often the event stream samples. Default DefaultInterval.
	Interval time.Duration
	// Logger receives failures. nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the page's request metrics
	// (eventline_http_requests_total and
	// eventline_http_request_duration_seconds, labelled api="web" and the
	// route pattern). An event stream is timed from its start to its end.
	Registerer prometheus.Registerer
}

// Handler serves the page, its event stream and its actions. Close it to end
// the event streams and the rebuilds it started.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	files   fs.FS // the assets
	static  http.Handler
	proxy   http.Handler
	ctx     context.Context // ended by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the rebuilds
	mu      sync.Mutex
	jobs    map[string]*job // the latest rebuild of each projection
	nextJob int
	stats   *httpjson.Metrics
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Redis == nil {
		return nil, errors.New("web: Config.Redis is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("web: assets: %w", err)
	}
	stats, err := httpjson.NewMetrics("web", cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, files: sub, static: http.FileServerFS(sub), jobs: map[string]*job{}, stats: stats}
	if cfg.CommandURL != "" {
		u, err := url.Parse(cfg.CommandURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("web: command URL %q: want http(s)://host:port", cfg.CommandURL)
		}
		h.proxy = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Header.Del("Cookie")
				r.Out.Header.Del("Authorization")
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				h.log.Warn("web: command API unreachable", "url", cfg.CommandURL, "path", r.URL.Path, "error", err)
				writeError(w, http.StatusBadGateway, httpjson.CodeUnavailable, "the command API cannot be reached; retry later")
			},
		}
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// Close ends the event streams and cancels the rebuilds this Handler
// started (a rebuild cut short before its switch leaves the live build
// untouched), and waits for them.
func (h *Handler) Close() {
	h.cancel()
	h.wg.Wait()
}

// Mount registers the page on mux: GET / (the shop), GET /ops (the
// operations view), GET /assets/..., GET /web/config, GET /web/events (the
// event stream), GET /web/deadletters, POST /web/rebuild,
// POST /web/deadletters/retry and, with
// Config.CommandURL or Config.ProxyCommands, the command routes.
func (h *Handler) Mount(mux *http.ServeMux) {
	m := h.stats
	m.HandleFunc(mux, "GET /{$}", h.page("index.html"))
	m.HandleFunc(mux, "GET /ops", h.page("ops.html"))
	mux.Handle("GET /assets/", m.Route("GET /assets/", http.StripPrefix("/assets", h.assets())))
	m.HandleFunc(mux, "GET /web/config", h.config)
	m.HandleFunc(mux, "GET /web/events", h.events)
	m.HandleFunc(mux, "GET /web/deadletters", h.deadLetters)
	m.HandleFunc(mux, "POST /web/rebuild", h.admin(h.rebuild))
	m.HandleFunc(mux, "POST /web/deadletters/retry", h.admin(h.retryDeadLetter))
	if h.proxy != nil || h.cfg.ProxyCommands {
		for _, p := range []string{"POST /carts", "POST /carts/{id}/items", "PUT /carts/{id}/items/{product_id}",
			"DELETE /carts/{id}/items/{product_id}", "POST /carts/{id}/checkout", "POST /customers"} {
			m.HandleFunc(mux, p, h.forward)
		}
	}
}

// contentSecurityPolicy allows the page's own scripts, styles and
// connections only: even a value that escaped escaping could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (h *Handler) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, httpjson.CodeInternal, "internal error")
			return
		}
		secure(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	}
}

func (h *Handler) assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only files: a missing one, or a directory (which http.FileServer
		// would list), is a JSON 404 like every other error.
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if st, err := fs.Stat(h.files, name); err != nil || st.IsDir() {
			writeError(w, http.StatusNotFound, httpjson.CodeNotFound, "no such asset")
			return
		}
		secure(w)
		w.Header().Set("Cache-Control", "no-cache")
		h.static.ServeHTTP(w, r)
	})
}

// PageConfig is the body of GET /web/config: what the page may offer.
type PageConfig struct {
	// Admin: actions are enabled (a token is configured); the page asks for it.
	Admin bool `json:"admin"`
	// Rebuild: this process can rebuild projections (it has the event store).
	// Without it a rebuild from the page is a request a projector runs.
	Rebuild bool `json:"rebuild"`
	// Commands: commands can be sent from this origin.
	Commands bool `json:"commands"`
	// Projections are the application's projections.
	Projections []string `json:"projections"`
}

func (h *Handler) config(w http.ResponseWriter, r *http.Request) {
	c := PageConfig{Admin: h.cfg.AdminToken != "", Rebuild: h.cfg.Store != nil,
		Commands: h.proxy != nil || !h.cfg.ProxyCommands, Projections: []string{}}
	for _, p := range h.cfg.Projections {
		c.Projections = append(c.Projections, p.Name())
	}
	writeJSON(w, http.StatusOK, c)
}

// forward sends a command to the command API, from the page's own origin
// only.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, httpjson.CodeForbidden, "cross-origin request refused")
		return
	}
	if h.proxy == nil {
		writeError(w, http.StatusServiceUnavailable, httpjson.CodeUnavailable,
			"no command API is configured for this query API (--command-url, EVENTLINE_COMMAND_URL)")
		return
	}
	h.proxy.ServeHTTP(w, r)
}

// writeError answers the JSON error body every API of the sample answers
// (package httpjson).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	httpjson.Write(w, httpjson.NewError(status, code, msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	httpjson.SetHeaders(w.Header(), true)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
