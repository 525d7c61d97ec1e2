package postgres

import "fmt"

// statements are the store's SQL with its schema name filled in. pgx prepares
// and caches each one per connection on first use; the writer prepares the
// group statement (writeAssumed) itself and sends its parameters encoded
// (params).
type statements struct {
	head                                 string
	lockStreams, readStreams, eventsByID string
	takePositions, insertEvents          string
	updateStreams, notify                string
	writeAssumed, lockHead               string
	streamPage, logPage, streamNames     string
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
		// The one-round-trip path: a whole batch in one statement. It takes
		// the head row first (every writing transaction does, so writers
		// never deadlock on stream rows and commit one at a time: see
		// doc.go), then sets each stream the batch appends to from the
		// version the writer assumed to the version it decided: existing
		// streams ($2-$5: name, assumed, new version, last position
		// relative to the batch, 0 when nothing is written) only when they
		// are at the assumed version, new ones ($6-$8) only when missing or
		// at version 0. It inserts the events ($9-$17), NOTIFYs on commit and
		// returns the position before the batch's first. A stream at
		// another version makes it fail with division_by_zero (22012), one
		// of the batch's event ids already in the log with a unique
		// violation of events_id (23505), before anything commits; the
		// writer then runs the batch on the path that reads first. The
		// unique index is the id check: it sees ids committed after the
		// statement's snapshot, and probing the ids once more before the
		// insert cost a fifth of the statement.
		writeAssumed: q(`WITH h AS (UPDATE %[1]s.head SET position = position + $1::bigint RETURNING position - $1::bigint AS base),
			upd AS (UPDATE %[1]s.streams s SET version = u.version,
					position = CASE WHEN u.rel = 0 THEN s.position ELSE (SELECT base FROM h) + u.rel END
				FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(name, assumed, version, rel)
				WHERE s.name = u.name AND s.version = u.assumed
				RETURNING s.id, s.name),
			ins AS (INSERT INTO %[1]s.streams AS s (name, version, position)
				SELECT u.name, u.version, CASE WHEN u.rel = 0 THEN 0 ELSE (SELECT base FROM h) + u.rel END
				FROM unnest($6::text[], $7::bigint[], $8::bigint[]) AS u(name, version, rel)
				ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = excluded.position
				WHERE s.version = 0
				RETURNING s.id, s.name),
			ev AS (INSERT INTO %[1]s.events
				(position, stream, version, id, type, recorded_at, correlation_id, causation_id, headers, data)
				SELECT (SELECT base FROM h) + u.rel, st.id, u.version, u.id, u.type, now(),
					nullif(u.correlation, ''), nullif(u.causation, ''), u.headers, u.data
				FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::uuid[], $13::text[], $14::text[],
						$15::text[], $16::bytea[], $17::bytea[])
					AS u(stream, rel, version, id, type, correlation, causation, headers, data)
				JOIN (SELECT id, name FROM upd UNION ALL SELECT id, name FROM ins) st ON st.name = u.stream)
			SELECT h.base, pg_notify($18::text, ''),
				1 / ((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins) = cardinality($2::text[]) + cardinality($6::text[]))::int
			FROM h`),
		// Locks the head row at the start of a transaction of the path that
		// reads first, before any stream row, as writeAssumed does.
		lockHead: q(`SELECT position FROM %s.head FOR UPDATE`),
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
		// A page of the log: a range scan of the events' primary key. The
		// stream comes as its id; readers name it from streamNames. The range
		// is open above (a reader drops what lies past its end): with two
		// bounds and no statistics yet (a freshly loaded table) the planner
		// estimated a few hundred rows, read the whole rest of the log
		// through a bitmap scan and sorted it for every page.
		logPage: q(`SELECT position, version, id, type, recorded_at, coalesce(correlation_id, ''),
				coalesce(causation_id, ''), headers, data, stream
			FROM %[1]s.events
			WHERE position > $1 ORDER BY position LIMIT $2`),
		streamNames: q(`SELECT id, name FROM %s.streams WHERE id = ANY($1::bigint[])`),
	}
}
