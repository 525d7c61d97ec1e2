package postgres

import "fmt"

// statements are the store's SQL with its schema name filled in. pgx prepares
// and caches each one per connection on first use.
type statements struct {
	head                                 string
	lockStreams, readStreams, eventsByID string
	takePositions, insertEvents          string
	updateStreams, notify                string
	streamPage, logPage                  string
}

func newStatements(schema string) statements {
	q := func(format string) string { return fmt.Sprintf(format, schema) }
	return statements{
		head: q(`SELECT position FROM %s.head`),
		// Creates missing streams and locks every one until the transaction
		// ends, in the order given (sorted by the writer). The no-op update
		// is what takes the lock on an existing row, and RETURNING reads the
		// row's newest committed version after any wait for it.
		lockStreams: q(`INSERT INTO %[1]s.streams AS s (name) SELECT unnest($1::text[])
			ON CONFLICT (name) DO UPDATE SET name = excluded.name
			RETURNING s.id, s.name, s.version, s.position`),
		readStreams: q(`SELECT id, name, version, position FROM %s.streams WHERE name = ANY($1::text[])`),
		eventsByID: q(`SELECT e.id, s.name, e.version, e.position FROM %[1]s.events e
			JOIN %[1]s.streams s ON s.id = e.stream WHERE e.id = ANY($1::uuid[])`),
		// Takes the batch's positions. The row lock it takes is held until
		// COMMIT, so the next writer takes its positions only after this
		// transaction committed: positions are assigned in commit order.
		takePositions: q(`UPDATE %s.head SET position = position + $1 RETURNING position`),
		insertEvents: q(`INSERT INTO %[1]s.events
			(position, stream, version, id, type, recorded_at, correlation_id, causation_id, headers, data)
			SELECT h.position - $1 + u.rel, u.stream, u.version, u.id, u.type, now(),
				nullif(u.correlation, ''), nullif(u.causation, ''), u.headers, u.data
			FROM %[1]s.head h,
				unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::text[],
					$9::bytea[], $10::bytea[])
				AS u(rel, stream, version, id, type, correlation, causation, headers, data)`),
		updateStreams: q(`UPDATE %[1]s.streams s SET version = u.version, position = h.position - $1 + u.rel
			FROM %[1]s.head h, unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, version, rel)
			WHERE s.id = u.id`),
		// Delivered to listeners when the transaction commits.
		notify: `SELECT pg_notify($1, '')`,
		// A page of a stream from a version. The stream's row is joined to its
		// events, so no row means no stream, and one row without an event
		// means nothing from that version: one query answers both.
		streamPage: q(`SELECT coalesce(e.position, 0), coalesce(e.version, 0),
				coalesce(e.id, '00000000-0000-0000-0000-000000000000'), coalesce(e.type, ''),
				coalesce(e.recorded_at, 'epoch'), coalesce(e.correlation_id, ''), coalesce(e.causation_id, ''),
				e.headers, coalesce(e.data, '')
			FROM %[1]s.streams s LEFT JOIN %[1]s.events e ON e.stream = s.id AND e.version >= $2
			WHERE s.name = $1 AND s.version > 0 ORDER BY e.version LIMIT $3`),
		// A page of the log: a range scan of the events' primary key.
		logPage: q(`SELECT e.position, e.version, e.id, e.type, e.recorded_at, coalesce(e.correlation_id, ''),
				coalesce(e.causation_id, ''), e.headers, e.data, s.name
			FROM %[1]s.events e JOIN %[1]s.streams s ON s.id = e.stream
			WHERE e.position > $1 AND e.position <= $2 ORDER BY e.position LIMIT $3`),
	}
}
