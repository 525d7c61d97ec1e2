package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/http/web"
	"github.com/eventline/eventline/sample/readmodel"
)

// parts are the pieces of the sample that the roles plug in: the read models
// and the query API. Keeping them in one place lets tests swap them and keeps
// the roles independent of how each piece is built.
type parts struct {
	// projections returns the sample's projections, with the carts model
	// in cartsPartitions partitions (Config.CartsPartitions).
	projections func(reg *eventstore.Registry, cartsPartitions int) []projection.Projection
	// mountQueries registers the query endpoints. It returns the check of
	// /readyz that says whether they can answer, and close, which releases
	// what they hold after the HTTP server stopped.
	mountQueries func(rdb redis.UniversalClient, mux *http.ServeMux, cfg Config, log *slog.Logger, metrics prometheus.Registerer) (ready func(context.Context) error, close func())
	// wrapStore, when set, wraps the event store the process opened (tests
	// put faults there).
	wrapStore func(eventstore.Store) eventstore.Store
}

func defaultParts() parts {
	return parts{
		projections: sampleProjections,
		mountQueries: func(rdb redis.UniversalClient, mux *http.ServeMux, cfg Config, log *slog.Logger, metrics prometheus.Registerer) (func(context.Context) error, func()) {
			api := queryapi.New(rdb, queryapi.Config{MaxWaiters: cfg.MaxWaiters, Logger: log, Registerer: metrics})
			api.Mount(mux)
			return api.Ready, func() { _ = api.Close() }
		},
	}
}

// Projections returns the sample's projections, for tools such as the
// replay and status commands, with the carts model unpartitioned.
func Projections() []projection.Projection { return sampleProjections(NewRegistry(), 1) }

// ProjectionsWith returns the sample's projections with the carts model in
// cartsPartitions partitions (Config.CartsPartitions), as serve and
// projector run them with that setting.
func ProjectionsWith(cartsPartitions int) []projection.Projection {
	return sampleProjections(NewRegistry(), cartsPartitions)
}

// sampleProjections are the read models and the web page's tail of the log.
func sampleProjections(reg *eventstore.Registry, cartsPartitions int) []projection.Projection {
	return append(readmodel.ProjectionsWith(reg, readmodel.Options{CartsPartitions: cartsPartitions}), web.TailProjection())
}

// mountWeb mounts the web page (package sample/http/web) of serve and query-api.
// Its event streams end when ctx does, so that they do not hold up the
// graceful shutdown; serve gives it the store, for rebuilds.
func mountWeb(ctx context.Context, role Role, cfg Config, store eventstore.Store, rdb redis.UniversalClient,
	reg *eventstore.Registry, mux *http.ServeMux, log *slog.Logger, metrics prometheus.Registerer, p parts) (*web.Handler, error) {
	wc := web.Config{Redis: rdb, AdminToken: cfg.AdminToken, Logger: log, Registerer: metrics}
	if p.projections != nil {
		wc.Projections = p.projections(reg, cfg.CartsPartitions)
	}
	if role == RoleServe {
		wc.Store = store
	} else {
		wc.CommandURL, wc.ProxyCommands = cfg.CommandURL, true
	}
	h, err := web.New(wc)
	if err != nil {
		return nil, fmt.Errorf("app: web page: %w", err)
	}
	h.Mount(mux)
	context.AfterFunc(ctx, h.Close)
	return h, nil
}
