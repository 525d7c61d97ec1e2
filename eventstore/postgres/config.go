package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults used when a Config field is left zero.
const (
	// DefaultSchema is the PostgreSQL schema that holds the store's tables.
	DefaultSchema = "eventline"
	// DefaultMaxEventSize bounds one event's data plus metadata, in bytes.
	DefaultMaxEventSize = 16 << 20
	// DefaultPollInterval is the longest a caught-up subscription waits before
	// looking at the log by itself, in case a notification was lost.
	DefaultPollInterval = time.Second
	// DefaultCommitTimeout bounds one group commit, from BEGIN to COMMIT.
	DefaultCommitTimeout = 10 * time.Second
	// DefaultPageSize is how many records one read query fetches.
	DefaultPageSize = 1000
	// DefaultMaxConns is the size of the connection pool used for reads; the
	// writer and the listener have one connection each on top of it.
	DefaultMaxConns = 8
)

// ErrInvalidConfig means a Config cannot be used; the error says which field.
var ErrInvalidConfig = errors.New("postgres: invalid config")

// schemaName is what the store accepts as a schema name: a plain lower-case
// SQL identifier, so that it never needs quoting in statements or channels.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// Config configures a Store. Only URL is required.
type Config struct {
	// URL is the database, as a postgres:// URL or a libpq key=value string,
	// e.g. postgres://eventline:secret@db:5432/app?sslmode=disable.
	URL string
	// Schema names the PostgreSQL schema that holds the store's tables, so that
	// several applications can share one database. It is created when missing.
	// Lower-case letters, digits and '_', at most 48 bytes. "" means
	// DefaultSchema.
	Schema string
	// MaxEventSize bounds the bytes of data plus metadata of one event; larger
	// events are refused with eventstore.ErrTooLarge. 0 means
	// DefaultMaxEventSize. PostgreSQL itself refuses values over 1 GiB.
	MaxEventSize int
	// PollInterval is the longest a caught-up subscription waits without a
	// notification before it reads the log anyway. Subscriptions are woken by
	// LISTEN/NOTIFY; the poll only bounds the delay when a notification is
	// lost (the listening connection broke). 0 means DefaultPollInterval.
	PollInterval time.Duration
	// CommitTimeout bounds one group commit. An append whose commit does not
	// finish in time fails with eventstore.ErrUnavailable. 0 means
	// DefaultCommitTimeout.
	CommitTimeout time.Duration
	// PageSize is the most records one read query fetches (ReadAll,
	// ReadStream, Subscribe). 0 means DefaultPageSize.
	PageSize int
	// MaxConns is the most pooled connections for reads. 0 means
	// DefaultMaxConns.
	MaxConns int
	// Logger receives the store's rare operational messages. nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the group-commit metrics
	// (eventline_store_group_commit_appends, eventline_store_group_commit_events,
	// eventline_store_commit_duration_seconds, labelled backend="postgres").
	Registerer prometheus.Registerer
}

// Validate reports the first unusable field, as an error matching
// ErrInvalidConfig. It does not contact the server.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("%w: URL is required", ErrInvalidConfig)
	case c.Schema != "" && !schemaName.MatchString(c.Schema):
		return fmt.Errorf("%w: Schema %q: want lower-case letters, digits and '_', at most 48 bytes", ErrInvalidConfig, c.Schema)
	case c.MaxEventSize < 0 || c.MaxEventSize > 1<<30:
		return fmt.Errorf("%w: MaxEventSize %d: want 0 to 1 GiB", ErrInvalidConfig, c.MaxEventSize)
	case c.PollInterval < 0:
		return fmt.Errorf("%w: PollInterval %s is negative", ErrInvalidConfig, c.PollInterval)
	case c.CommitTimeout < 0:
		return fmt.Errorf("%w: CommitTimeout %s is negative", ErrInvalidConfig, c.CommitTimeout)
	case c.PageSize < 0:
		return fmt.Errorf("%w: PageSize %d is negative", ErrInvalidConfig, c.PageSize)
	case c.MaxConns < 0:
		return fmt.Errorf("%w: MaxConns %d is negative", ErrInvalidConfig, c.MaxConns)
	}
	if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		// pgx's message may quote the URL; it redacts the password itself.
		return fmt.Errorf("%w: URL: %v", ErrInvalidConfig, err)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.MaxEventSize == 0 {
		c.MaxEventSize = DefaultMaxEventSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
