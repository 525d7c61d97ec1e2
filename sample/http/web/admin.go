package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// sameOrigin reports whether a state-changing request comes from the page's
// own origin. Browsers send Sec-Fetch-Site and, on POST, Origin; a request
// without either is not from a browser page (curl, a test), which cannot
// carry a victim's ambient credentials anyway.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// admin guards an action: a token must be configured, the request must come
// from the page's origin and carry "Authorization: Bearer <token>". The
// comparison is of SHA-256 digests in constant time, so neither the token
// nor its length leaks through timing.
func (h *Handler) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.AdminToken == "" {
			writeError(w, http.StatusForbidden, httpjson.CodeAdminDisabled,
				"actions are disabled: no admin token is configured (--admin-token, EVENTLINE_ADMIN_TOKEN)")
			return
		}
		if !sameOrigin(r) {
			writeError(w, http.StatusForbidden, httpjson.CodeForbidden, "cross-origin request refused")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		want := sha256.Sum256([]byte(h.cfg.AdminToken))
		have := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventline"`)
			writeError(w, http.StatusUnauthorized, httpjson.CodeUnauthorized, "missing or wrong admin token")
			return
		}
		next(w, r)
	}
}

// RebuildRequest is the body of POST /web/rebuild.
type RebuildRequest struct {
	Projection string `json:"projection"`
}

// Job is a rebuild started from the page, as the event stream reports it.
type Job struct {
	ID         int    `json:"id"`
	Projection string `json:"projection"`
	// Build is the build being made ("2g1"), Previous the one it replaces.
	Build    string    `json:"build"`
	Previous string    `json:"previous"`
	Started  time.Time `json:"started"`
	// Done: the rebuild returned; Error says why it failed, if it did.
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"`
	// Samples are its progress reports, oldest first (at most maxSamples:
	// the first and the latest ones).
	Samples []Sample `json:"samples"`
}

// Sample is one progress report of a rebuild.
type Sample struct {
	At         time.Time `json:"at"`
	Phase      string    `json:"phase"`
	Checkpoint string    `json:"checkpoint"`
	Head       string    `json:"head"`
	// Percent is how far the build is from the start of the log to the head,
	// -1 when positions are not counts (EventStoreDB).
	Percent float64 `json:"percent"`
	// Rate is events applied per second since the previous report, ETA the
	// seconds left at that rate (-1: unknown).
	Rate float64 `json:"rate"`
	ETA  float64 `json:"eta"`
}

const maxSamples = 60

type job struct {
	Job
	lastCP uint64
	lastAt time.Time
}

func (j *job) add(p projection.Progress, now time.Time) {
	s := Sample{At: now.UTC(), Phase: string(p.Phase), Checkpoint: p.Checkpoint.String(), Head: p.Head.String(),
		Percent: -1, Rate: -1, ETA: -1}
	counted := p.Head.Commit == p.Head.Prepare && p.Checkpoint.Commit == p.Checkpoint.Prepare
	if counted {
		s.Percent = 100
		if p.Head.Commit > 0 && p.Checkpoint.Commit < p.Head.Commit {
			s.Percent = 100 * float64(p.Checkpoint.Commit) / float64(p.Head.Commit)
		}
		if !j.lastAt.IsZero() && now.After(j.lastAt) && p.Checkpoint.Commit >= j.lastCP {
			s.Rate = float64(p.Checkpoint.Commit-j.lastCP) / now.Sub(j.lastAt).Seconds()
			if p.Checkpoint.Commit >= p.Head.Commit {
				s.ETA = 0
			} else if s.Rate > 0 {
				s.ETA = float64(p.Head.Commit-p.Checkpoint.Commit) / s.Rate
			}
		}
		j.lastCP, j.lastAt = p.Checkpoint.Commit, now
	}
	if p.Phase == projection.PhaseRemovingOld || p.Phase == projection.PhaseDone {
		// Switched: the build is live and follows the head like any other;
		// writes that keep coming are not rebuild work left.
		s.Percent, s.ETA = 100, 0
	}
	j.Build = query.Build{Version: p.Version, Generation: p.Generation}.String()
	j.Previous = query.Build{Version: p.Previous, Generation: p.PreviousGeneration}.String()
	if len(j.Samples) == maxSamples {
		// Keep the first report (where it started) and the latest ones.
		j.Samples = append(j.Samples[:1], j.Samples[2:]...)
	}
	j.Samples = append(j.Samples, s)
}

// rebuild starts a forced blue/green rebuild of one projection: a new build
// (the next generation of the active version, or the code's newer version)
// catches up beside the live one and replaces it. It answers 202 at once;
// the event stream reports the progress.
func (h *Handler) rebuild(w http.ResponseWriter, r *http.Request) {
	var req RebuildRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "body must be {\"projection\": name}")
		return
	}
	var proj projection.Projection
	for _, p := range h.cfg.Projections {
		if p.Name() == req.Projection {
			proj = p
		}
	}
	if proj == nil {
		writeError(w, http.StatusNotFound, httpjson.CodeNotFound, "no such projection")
		return
	}
	if h.cfg.Store == nil {
		h.requestRebuild(w, r, proj.Name())
		return
	}
	h.mu.Lock()
	if j := h.jobs[proj.Name()]; j != nil && !j.Done {
		h.mu.Unlock()
		writeError(w, http.StatusConflict, httpjson.CodeConflict, "a rebuild of this projection is already running")
		return
	}
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, httpjson.CodeUnavailable, "shutting down")
		return
	}
	h.nextJob++
	j := &job{Job: Job{ID: h.nextJob, Projection: proj.Name(), Started: time.Now().UTC(), Samples: []Sample{}}}
	h.jobs[proj.Name()] = j
	snapshot := j.Job
	h.mu.Unlock()

	h.wg.Go(func() {
		log := h.log.With("projection", proj.Name(), "job", j.ID)
		log.Info("rebuild started from the web page")
		res, err := projection.Rebuild(h.ctx, projection.Config{Store: h.cfg.Store, Redis: h.cfg.Redis,
			Projection: proj, Logger: h.log}, projection.RebuildOptions{
			Force:         true,
			ProgressEvery: 200 * time.Millisecond,
			Progress: func(p projection.Progress) {
				h.mu.Lock()
				j.add(p, time.Now())
				h.mu.Unlock()
			},
		})
		h.mu.Lock()
		defer h.mu.Unlock()
		j.Done = true
		if err != nil {
			// The page shows this; the log keeps the error, which names
			// keys and Go packages.
			j.Error = "the rebuild failed; the server log says why"
			log.Error("rebuild failed", "error", err)
			return
		}
		j.Build = query.Build{Version: res.Version, Generation: res.Generation}.String()
		log.Info("rebuild done", "build", j.Build)
	})
	writeJSON(w, http.StatusAccepted, snapshot)
}

// requestRebuild is the rebuild of a process without the event store (the
// query API): it records the request in Redis (projection.RequestRebuild)
// for a projector to run, and answers 202 with {"projection", "requested":
// true}. The new build's progress shows in the projections table, from the
// status its runner writes.
func (h *Handler) requestRebuild(w http.ResponseWriter, r *http.Request, name string) {
	err := projection.RequestRebuild(r.Context(), h.cfg.Redis, name)
	switch {
	case errors.Is(err, projection.ErrRebuildRequested):
		writeError(w, http.StatusConflict, httpjson.CodeConflict, "a rebuild of this projection is already requested")
		return
	case err != nil:
		h.redisError(w, err)
		return
	}
	h.log.Info("rebuild requested from the web page for a projector", "projection", name)
	writeJSON(w, http.StatusAccepted, map[string]any{"projection": name, "requested": true})
}

// jobList returns a copy of the rebuilds, by id.
func (h *Handler) jobList() []Job {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Job, 0, len(h.jobs))
	for _, j := range h.jobs {
		c := j.Job
		c.Samples = append(make([]Sample, 0, len(j.Samples)), j.Samples...)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Job) int { return a.ID - b.ID })
	return out
}

// MaxDeadLetters is the most dead letters GET /web/deadletters returns.
const MaxDeadLetters = 100

// deadLetters lists the latest dead letters of one build, across its
// partitions:
// GET /web/deadletters?projection=carts&build=2 (build defaults to the
// active one).
func (h *Handler) deadLetters(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("projection")
	if err := query.ValidateName(name); err != nil {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "projection must be a projection name")
		return
	}
	b, ok := h.build(w, r, name, r.URL.Query().Get("build"))
	if !ok {
		return
	}
	entries, err := projection.ReadDeadLetters(r.Context(), h.cfg.Redis, name, b, MaxDeadLetters)
	if err != nil {
		h.redisError(w, err)
		return
	}
	if entries == nil {
		entries = []projection.DeadLetterEntry{}
	}
	retrying, err := projection.ReadRetries(r.Context(), h.cfg.Redis, name, b)
	if err != nil {
		h.redisError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"projection": name, "build": b.String(), "entries": entries,
		"count": len(entries), "retrying": retrying})
}

// RetryRequest is the body of POST /web/deadletters/retry. Build defaults
// to the active build.
type RetryRequest struct {
	Projection string `json:"projection"`
	Build      string `json:"build,omitempty"`
	Position   string `json:"position"`
}

// retryDeadLetter asks the lease holder of a build to apply one of its dead
// letters again (projection.RetryDeadLetter). It needs no event store: the
// request is recorded in Redis and the projector holding the lease reads the
// record itself, so it works in the query API of a split deployment too. It
// answers 202 once the request is recorded; the dead-letter listing shows it
// under "retrying" until the runner has applied it, or back among the
// entries with the new error if it failed again.
func (h *Handler) retryDeadLetter(w http.ResponseWriter, r *http.Request) {
	var req RetryRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "body must be {\"projection\": name, \"position\": p}")
		return
	}
	if err := query.ValidateName(req.Projection); err != nil {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "projection must be a projection name")
		return
	}
	pos, err := eventstore.ParsePosition(req.Position)
	if err != nil || req.Position == "" {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "position must be a dead letter's position")
		return
	}
	b, ok := h.build(w, r, req.Projection, req.Build)
	if !ok {
		return
	}
	err = projection.RetryDeadLetter(r.Context(), h.cfg.Redis, projection.RetryDeadLetterOptions{Projection: req.Projection, Build: b, Position: pos})
	switch {
	case errors.Is(err, projection.ErrNoDeadLetter):
		writeError(w, http.StatusNotFound, httpjson.CodeNotFound, "no dead letter at this position (already retried?)")
		return
	case err != nil:
		h.redisError(w, err)
		return
	}
	h.log.Info("dead letter retry requested from the web page", "projection", req.Projection, "build", b.String(),
		"position", pos.String())
	writeJSON(w, http.StatusAccepted, map[string]any{"projection": req.Projection, "build": b.String(),
		"position": pos.String(), "state": "queued"})
}

// build returns the build s names, or the active build of projection name
// when s is empty. When it cannot, it has answered the error and returns
// false.
func (h *Handler) build(w http.ResponseWriter, r *http.Request, name, s string) (query.Build, bool) {
	if s != "" {
		b, err := query.ParseBuild(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "build must be like 2 or 2g1")
			return query.Build{}, false
		}
		return b, true
	}
	v, err := query.Resolve(r.Context(), h.cfg.Redis, name)
	if err != nil {
		h.redisError(w, err)
		return query.Build{}, false
	}
	return v.Build(), true
}

func (h *Handler) redisError(w http.ResponseWriter, err error) {
	if errors.Is(err, query.ErrNotReady) {
		writeError(w, http.StatusNotFound, httpjson.CodeNotFound, "no active build of this projection")
		return
	}
	h.log.Warn("web: redis", "error", err)
	writeError(w, http.StatusServiceUnavailable, httpjson.CodeUnavailable, "the read model store is unavailable; retry later")
}
