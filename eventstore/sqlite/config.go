package sqlite

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyncMode says how hard a commit works to reach the disk.
type SyncMode int

const (
	// SyncFull makes every append durable before it returns, as WAL mode
	// with synchronous=FULL does: the WAL is fsynced after the commit and
	// before the commit's appends return, so an acknowledged append survives
	// a power failure or OS crash too. This is the default (the zero value).
	// The store runs the fsync itself, behind the writer, so that the next
	// group commit proceeds while the disk syncs the last one, and one fsync
	// covers every commit made meanwhile: concurrent callers share it, a
	// lone caller pays it for every append.
	SyncFull SyncMode = iota
	// SyncNormal runs WAL mode with synchronous=NORMAL: a committed append
	// survives a crash or kill of the process, but a power failure or OS crash
	// may lose the last commits acknowledged before it (the WAL is fsynced only
	// at checkpoints). The file itself never corrupts. Choose it explicitly
	// when losing the last moments of writes to a power loss is acceptable and
	// a lone writer's speed matters: it saves the fsync a commit waits for.
	SyncNormal
)

// String returns "normal" or "full".
func (m SyncMode) String() string {
	switch m {
	case SyncNormal:
		return "normal"
	case SyncFull:
		return "full"
	default:
		return fmt.Sprintf("SyncMode(%d)", int(m))
	}
}

// Defaults used when a Config field is left zero.
const (
	// DefaultMaxEventSize bounds one event's data plus metadata, in bytes.
	DefaultMaxEventSize = 16 << 20
	// DefaultPollInterval is the longest a subscription waits before looking
	// for records appended by another process.
	DefaultPollInterval = 250 * time.Millisecond
)

// ErrInvalidConfig means a Config cannot be used; the error says which field.
var ErrInvalidConfig = errors.New("sqlite: invalid config")

// Config configures a Store. Only Path is required.
type Config struct {
	// Path is the database file. It is created if missing, along with its
	// parent directory. SQLite keeps two companion files beside it while the
	// store is open (-wal and -shm).
	Path string
	// Sync chooses the durability of a commit; the zero value is SyncFull,
	// durable against power loss. SyncNormal trades that for speed.
	Sync SyncMode
	// MaxEventSize bounds the bytes of data plus metadata of one event; larger
	// events are refused with eventstore.ErrTooLarge. 0 means
	// DefaultMaxEventSize.
	MaxEventSize int
	// PollInterval is the longest wait between two looks for records appended by
	// other processes to the same file. Appends made through this Store wake
	// subscriptions at once; appends made elsewhere are seen within about
	// PollInterval (subscriptions poll with back-off from 1ms up to it). 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives the store's rare operational messages. nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the group-commit metrics
	// (eventline_store_group_commit_appends, eventline_store_group_commit_events,
	// eventline_store_commit_duration_seconds, labelled backend="sqlite").
	Registerer prometheus.Registerer
}

// Validate reports the first unusable field, as an error matching
// ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: Path is required", ErrInvalidConfig)
	case c.Sync != SyncNormal && c.Sync != SyncFull:
		return fmt.Errorf("%w: unknown Sync mode %d", ErrInvalidConfig, int(c.Sync))
	case c.MaxEventSize < 0:
		return fmt.Errorf("%w: MaxEventSize %d is negative", ErrInvalidConfig, c.MaxEventSize)
	case c.PollInterval < 0:
		return fmt.Errorf("%w: PollInterval %s is negative", ErrInvalidConfig, c.PollInterval)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.MaxEventSize == 0 {
		c.MaxEventSize = DefaultMaxEventSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ParseSyncMode returns the mode named by s, "full" or "normal" (any case),
// as String spells them; "" is the default, SyncFull. Anything else is an
// error matching ErrInvalidConfig.
func ParseSyncMode(s string) (SyncMode, error) {
	switch strings.ToLower(s) {
	case "", "full":
		return SyncFull, nil
	case "normal":
		return SyncNormal, nil
	}
	return 0, fmt.Errorf("%w: unknown sync mode %q (want full or normal)", ErrInvalidConfig, s)
}
