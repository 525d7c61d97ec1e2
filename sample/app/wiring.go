package app

import (
	"context"
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
	// mountQueries registers the query endpoints and returns the check of
	// /readyz that says whether they can answer.
	mountQueries func(rdb redis.UniversalClient, mux *http.ServeMux, log *slog.Logger) func(context.Context) error
}

func defaultParts() parts {
	return parts{
		projections: readmodel.Projections,
		mountQueries: func(rdb redis.UniversalClient, mux *http.ServeMux, log *slog.Logger) func(context.Context) error {
			api := queryapi.New(rdb, queryapi.Config{Logger: log})
			api.Mount(mux)
			return api.Ready
		},
	}
}

// Projections returns the sample's projections, for tools such as the
// replay and status commands.
func Projections() []projection.Projection { return readmodel.Projections(NewRegistry()) }
