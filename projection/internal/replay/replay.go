// Package replay lets package projectiontest apply batches the way a
// projection.Runner does, without exporting that from package projection:
// an unfenced batch is for tests only.
package replay

import (
	"context"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// Batch applies recs to build b of p (a projection.Projection) in one
// MULTI/EXEC with the build's checkpoint, as a runner's batch does, but
// without a lease. Package projection sets it when it is initialised.
var Batch func(ctx context.Context, rdb redis.UniversalClient, p any, b query.Build, recs []eventstore.Record) error
