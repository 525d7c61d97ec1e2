package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/eventline/eventline/eventstore"
)

// Defaults used when a Config field is left zero.
const (
	// DefaultMaxEventSize bounds one event's data plus metadata, in bytes. It
	// matches EventStoreDB's default MaxAppendSize (1 MiB), so that an event
	// the server would refuse is refused before it is sent.
	DefaultMaxEventSize = 1 << 20
	// DefaultMinBackoff is the first wait before a dropped subscription is
	// opened again.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between two attempts to open a
	// dropped subscription again.
	DefaultMaxBackoff = 10 * time.Second
)

// ErrInvalidConfig means a Config cannot be used; the error says which field
// and, for a bad connection string, what the EventStoreDB client said about it.
var ErrInvalidConfig = errors.New("esdb: invalid config")

// Config configures a Store. Only URL is required.
type Config struct {
	// URL is an EventStoreDB connection string, parsed by the official client:
	// "esdb://host:2113?tls=false" for one insecure node,
	// "esdb://admin:changeit@host:2113" for one secure node,
	// "esdb://node1:2113,node2:2113,node3:2113?nodePreference=leader" or
	// "esdb+discover://cluster.example.com:2113" for a cluster. Settings the
	// client knows are accepted (tls, tlsVerifyCert, tlsCAFile, nodePreference,
	// maxDiscoverAttempts, discoveryInterval, gossipTimeout, keepAliveInterval,
	// keepAliveTimeout, defaultDeadline); any other setting is an error, so that a
	// misspelt "tls=false" does not silently leave TLS on.
	URL string
	// MaxEventSize bounds the bytes of data plus metadata of one event; larger
	// events are refused with eventstore.ErrTooLarge. 0 means
	// DefaultMaxEventSize. Raise it together with the server's MaxAppendSize.
	MaxEventSize int
	// MinBackoff and MaxBackoff bound the jittered exponential back-off between
	// attempts to reopen a dropped subscription. 0 means DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StreamPrefix, when set, is prepended to every stream id on the server, and
	// the store sees only streams that carry it: ReadAll, Subscribe and Head
	// skip every other stream. It lets several applications or environments
	// (or test runs) share one EventStoreDB without seeing each other's
	// events. Stream ids are validated and limited without it, and records
	// carry ids without it. It follows the rules of a stream id.
	StreamPrefix string
	// Logger receives the store's operational messages and the client's own
	// (client debug and info at Debug, client warnings and errors at Warn).
	// nil means slog.Default().
	Logger *slog.Logger
}

// knownSettings are the connection-string settings EventStore-Client-Go v4.1.0
// reads (configuration.go, parseSetting), lower-cased.
var knownSettings = map[string]bool{
	"discoveryinterval": true, "gossiptimeout": true, "maxdiscoverattempts": true,
	"nodepreference": true, "keepaliveinterval": true, "keepalivetimeout": true,
	"tls": true, "tlscafile": true, "tlsverifycert": true, "defaultdeadline": true,
}

// Validate reports the first unusable field, as an error matching
// ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("%w: URL is required", ErrInvalidConfig)
	case c.MaxEventSize < 0:
		return fmt.Errorf("%w: MaxEventSize %d is negative", ErrInvalidConfig, c.MaxEventSize)
	case c.MinBackoff < 0:
		return fmt.Errorf("%w: MinBackoff %s is negative", ErrInvalidConfig, c.MinBackoff)
	case c.MaxBackoff < 0:
		return fmt.Errorf("%w: MaxBackoff %s is negative", ErrInvalidConfig, c.MaxBackoff)
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("%w: MinBackoff %s is above MaxBackoff %s", ErrInvalidConfig, c.MinBackoff, c.MaxBackoff)
	}
	if c.StreamPrefix != "" {
		if err := eventstore.ValidateStreamID(c.StreamPrefix); err != nil {
			return fmt.Errorf("%w: StreamPrefix: %w", ErrInvalidConfig, err)
		}
	}
	_, err := parseURL(c.URL)
	return err
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.MaxEventSize == 0 {
		c.MaxEventSize = DefaultMaxEventSize
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// parseURL checks the settings of a connection string and parses it with the
// client. Errors match ErrInvalidConfig, name the string without its password
// and wrap the client's message.
func parseURL(s string) (*esdb.Configuration, error) {
	shown := redact(s)
	if _, query, ok := strings.Cut(s, "?"); ok {
		values, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("%w: URL %q: settings: %w", ErrInvalidConfig, shown, err)
		}
		for k, v := range values {
			key := strings.ToLower(k)
			if !knownSettings[key] {
				return nil, fmt.Errorf("%w: URL %q: unknown setting %q", ErrInvalidConfig, shown, k)
			}
			// The client ignores a malformed defaultDeadline (v4.1.0 returns nil
			// on that error), which would leave the 10s default in place.
			if key == "defaultdeadline" {
				if n, err := strconv.Atoi(v[0]); err != nil || n < 1 {
					return nil, fmt.Errorf("%w: URL %q: defaultDeadline %q must be a positive number of milliseconds",
						ErrInvalidConfig, shown, v[0])
				}
			}
		}
	}
	cfg, err := parseConnectionString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %q: %w", ErrInvalidConfig, shown, err)
	}
	return cfg, nil
}

// parseConnectionString runs the client's parser with its logger silenced: the
// parser logs through a console logger of its own, and unknown settings are
// already refused above.
func parseConnectionString(s string) (cfg *esdb.Configuration, err error) {
	// The client's parser is not ours; a malformed string must not take the
	// process down if it ever panics on one.
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, fmt.Errorf("connection string parser failed: %v", r)
		}
	}()
	return esdb.ParseConnectionString(s)
}

// redact hides the password of a connection string, for error messages.
func redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	at := strings.LastIndex(rest[:hostEnd], "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return s
	}
	return scheme + "://" + user + ":***" + rest[at:]
}

// clientLogger adapts the client's printf-style logging to slog. The client's
// info messages (one per discovery attempt) go to Debug; its errors, which
// include every dropped subscription, go to Warn: the store decides what is an
// error for the application.
func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		l := slog.LevelDebug
		if level == esdb.LogWarn || level == esdb.LogError {
			l = slog.LevelWarn
		}
		log.Log(context.Background(), l, fmt.Sprintf(format, args...), "component", "esdb-client")
	}
}
