package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// tailBacklog is how many tail entries a new event stream starts with.
const tailBacklog = 50

// Row is one build of one projection in the operations view: its status
// (package projection) and how fast it moves.
type Row struct {
	projection.Status
	// Build is the build's name ("2", "2g1").
	Build string `json:"build"`
	// Rate is the events per second the build applied since the previous
	// sample, -1 until there is one or when positions are not counts; ETA is
	// the seconds it needs at that rate to reach the head (0 caught up, -1
	// unknown).
	Rate float64 `json:"rate"`
	ETA  float64 `json:"eta"`
}

// StatusEvent is the data of an SSE "status" event.
type StatusEvent struct {
	At time.Time `json:"at"`
	// Head is the head of the log: read from the store when this process has
	// one (HeadFrom "store"), else the latest one the runners wrote ("runners").
	Head     string `json:"head"`
	HeadFrom string `json:"head_from"`
	Rows     []Row  `json:"rows"`
	Rebuilds []Job  `json:"rebuilds"`
	Error    string `json:"error,omitempty"`
}

// TailEvent is the data of an SSE "tail" event.
type TailEvent struct {
	// Reset: the entries replace what the page shows (a new stream, or the
	// eventlog projection was rebuilt).
	Reset   bool        `json:"reset"`
	Entries []TailEntry `json:"entries"`
	Error   string      `json:"error,omitempty"`
}

// sample is the previous checkpoint of a build, for its rate.
type sample struct {
	commit uint64
	at     time.Time
}

// events streams Server-Sent Events: "status" (every build of every
// projection, the rebuilds started here) and "tail" (new records of the
// log, from the eventlog projection, filtered by ?stream= and ?type=
// prefixes) every Config.Interval, until the client leaves or Close.
// ?tail=0 or ?status=0 leaves one out.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wantStatus, wantTail := q.Get("status") != "0", q.Get("tail") != "0"
	tail := &tailReader{rdb: h.cfg.Redis, filter: TailFilter{Stream: q.Get("stream"), Type: q.Get("type")}}
	if len(tail.filter.Stream) > 256 || len(tail.filter.Type) > 256 {
		writeError(w, http.StatusBadRequest, httpjson.CodeMalformed, "stream and type filters are at most 256 bytes")
		return
	}
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()

	prev := map[string]sample{}
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		// The server's WriteTimeout would cut a long stream: each write gets
		// its own deadline instead.
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if wantStatus {
			if err := send(w, "status", h.status(ctx, prev)); err != nil {
				return
			}
		}
		if wantTail {
			ev := TailEvent{Entries: []TailEntry{}}
			entries, reset, err := tail.next(ctx, tailBacklog)
			switch {
			case errors.Is(err, errNoTail):
				ev.Error = "the eventlog projection has not been built yet"
			case err != nil:
				h.log.Debug("web: tail", "error", err)
				ev.Error = "the read model store is unavailable"
			}
			if entries != nil {
				ev.Entries = entries
			}
			ev.Reset = reset
			if reset || len(ev.Entries) > 0 || ev.Error != "" {
				if err := send(w, "tail", ev); err != nil {
					return
				}
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func send(w http.ResponseWriter, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}

// status reads every build of every projection from Redis (and the head
// from the store, when there is one), computing rates against prev.
func (h *Handler) status(ctx context.Context, prev map[string]sample) StatusEvent {
	now := time.Now()
	ev := StatusEvent{At: now.UTC(), Rows: []Row{}, Rebuilds: h.jobList(), HeadFrom: "runners"}
	var head eventstore.Position
	if h.cfg.Store != nil {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p, err := h.cfg.Store.Head(hctx)
		cancel()
		if err == nil {
			head, ev.HeadFrom = p, "store"
		}
	}
	rows, err := h.readRows(ctx)
	if err != nil {
		h.log.Debug("web: status", "error", err)
		ev.Error = "the read model store is unavailable"
		return ev
	}
	if ev.HeadFrom == "runners" {
		for _, r := range rows {
			if head.Before(r.Head) {
				head = r.Head
			}
		}
	}
	ev.Head = head.String()
	for i := range rows {
		r := &rows[i]
		r.SetHead(head, now)
		r.Rate, r.ETA = -1, -1
		if r.LagEvents == 0 {
			r.ETA = 0
		}
		key := r.Name + "/" + r.Build
		if p, ok := prev[key]; ok && r.LagEvents >= 0 && r.Checkpoint.Commit >= p.commit && now.After(p.at) {
			r.Rate = float64(r.Checkpoint.Commit-p.commit) / now.Sub(p.at).Seconds()
			if r.LagEvents > 0 && r.Rate > 0 {
				r.ETA = float64(r.LagEvents) / r.Rate
			}
		}
		prev[key] = sample{commit: r.Checkpoint.Commit, at: now}
	}
	ev.Rows = rows
	return ev
}

// readRows reads the status of every build of every known projection.
func (h *Handler) readRows(ctx context.Context) ([]Row, error) {
	rdb := h.cfg.Redis
	names, err := rdb.SMembers(ctx, projection.ProjectionsKey).Result()
	if err != nil {
		return nil, err
	}
	for _, p := range h.cfg.Projections {
		if !slices.Contains(names, p.Name()) {
			names = append(names, p.Name())
		}
	}
	slices.Sort(names)
	var rows []Row
	for _, name := range names {
		if query.ValidateName(name) != nil {
			continue
		}
		builds, err := h.builds(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, b := range builds {
			s, err := projection.ReadStatus(ctx, rdb, name, b)
			if err != nil {
				return nil, err
			}
			rows = append(rows, Row{Status: s, Build: b.String()})
		}
		if len(builds) == 0 {
			rows = append(rows, Row{Status: projection.Status{Name: name, State: projection.StateStarting, LagEvents: -1, LagSeconds: -1}})
		}
	}
	return rows, nil
}

// builds lists the builds of name runners wrote, and the active one.
func (h *Handler) builds(ctx context.Context, name string) ([]query.Build, error) {
	rdb := h.cfg.Redis
	ss, err := rdb.SMembers(ctx, projection.VersionsKey(name)).Result()
	if err != nil {
		return nil, err
	}
	var bs []query.Build
	for _, s := range ss {
		if b, err := query.ParseBuild(s); err == nil {
			bs = append(bs, b)
		}
	}
	switch a, err := rdb.Get(ctx, query.ActiveKey(name)).Result(); {
	case err == nil:
		if b, err := query.ParseBuild(a); err == nil {
			bs = append(bs, b)
		}
	case !errors.Is(err, redis.Nil):
		return nil, err
	}
	slices.SortFunc(bs, func(a, b query.Build) int {
		switch {
		case a.Before(b):
			return -1
		case b.Before(a):
			return 1
		}
		return 0
	})
	return slices.Compact(bs), nil
}
