package app

import (
	"log/slog"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/queryapi"
	"github.com/eventline/eventline/sample/readmodel"
)

// parts are the pieces of the sample that the roles plug in: the read models
// and the query API. Keeping them in one place lets tests swap them and keeps
// the roles independent of how each piece is built.
type parts struct {
	// projections returns the sample's projections.
	projections func(reg *eventstore.Registry) []projection.Projection
	// mountQueries registers the query endpoints; close releases what they
	// hold, after the HTTP server stopped.
	mountQueries func(rdb redis.UniversalClient, mux *http.ServeMux, cfg Config, log *slog.Logger) (close func())
}

func defaultParts() parts {
	return parts{
		projections: readmodel.Projections,
		mountQueries: func(rdb redis.UniversalClient, mux *http.ServeMux, cfg Config, log *slog.Logger) func() {
			api := queryapi.New(rdb, queryapi.Config{MaxWaiters: cfg.MaxWaiters, Logger: log})
			api.Mount(mux)
			return func() { _ = api.Close() }
		},
	}
}

// Projections returns the sample's projections, for tools such as the
// replay and status commands.
func Projections() []projection.Projection { return readmodel.Projections(NewRegistry()) }
