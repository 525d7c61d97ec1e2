package app

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/breaker/storebreaker"
	"github.com/eventline/eventline/relay/broker"
	"github.com/eventline/eventline/sample/readmodel"
)

// Role is what one process of the sample does.
type Role string

// The roles.
const (
	RoleServe      Role = "serve"
	RoleCommandAPI Role = "command-api"
	RoleProjector  Role = "projector"
	RoleQueryAPI   Role = "query-api"
	RoleSaga       Role = "saga"
)

// Roles lists every role Run accepts.
func Roles() []Role { return []Role{RoleServe, RoleCommandAPI, RoleProjector, RoleQueryAPI, RoleSaga} }

// Environment variables, each the equivalent of a flag.
const (
	EnvStoreURL = "EVENTLINE_STORE_URL"
	EnvRedisURL = "EVENTLINE_REDIS_URL"
	EnvAddr     = "EVENTLINE_ADDR"
	EnvLogLevel = "EVENTLINE_LOG_LEVEL"
	// EnvCommandURL and EnvAdminToken configure the web page (package
	// sample/http/web) of serve and query-api.
	EnvCommandURL = "EVENTLINE_COMMAND_URL"
	EnvAdminToken = "EVENTLINE_ADMIN_TOKEN"
	// EnvMaxWaiters is --max-waiters: the cap on queries waiting for ?after=.
	EnvMaxWaiters = "EVENTLINE_MAX_WAITERS"
	// EnvBrokerURL is --broker: the message broker of the saga's relay and
	// consumers (serve and saga).
	EnvBrokerURL = "EVENTLINE_BROKER_URL"
	// EnvBreakerFailures and EnvBreakerOpenFor are --breaker-failures and
	// --breaker-open-for: when the circuit breaker of a dependency opens and
	// how long it stays open before a probe.
	EnvBreakerFailures = "EVENTLINE_BREAKER_FAILURES"
	EnvBreakerOpenFor  = "EVENTLINE_BREAKER_OPEN_FOR"
	// EnvStoreTimeout is --store-timeout: the bound on one event store call
	// of a command.
	EnvStoreTimeout = "EVENTLINE_STORE_TIMEOUT"
	// EnvCartsPartitions is --carts-partitions: the partition count of the
	// carts read model (serve and projector, which run the projections, and
	// the replay and status commands).
	EnvCartsPartitions = "EVENTLINE_CARTS_PARTITIONS"
)

// DefaultCartsPartitions is the carts model's partition count when none is
// configured: one, the unpartitioned layout.
const DefaultCartsPartitions = 1

// DefaultMaxWaiters is the cap on queries waiting for ?after= at once in one
// query process; the excess is answered 503 with Retry-After. A waiter costs
// a goroutine and a connection, not Redis commands.
const DefaultMaxWaiters = 10000

// DefaultStorePath is the event store of RoleServe when none is configured.
const DefaultStorePath = "./data/events.db"

// DefaultAddr returns the address a role listens on when none is configured:
// serve 127.0.0.1:8080, command-api :8081, query-api :8082, projector :8083
// (metrics and health only), saga :8084 (likewise). The split roles listen on every interface
// because they are meant to run in containers.
func DefaultAddr(role Role) string {
	switch role {
	case RoleCommandAPI:
		return ":8081"
	case RoleQueryAPI:
		return ":8082"
	case RoleProjector:
		return ":8083"
	case RoleSaga:
		return ":8084"
	}
	return "127.0.0.1:8080"
}

// Config is the configuration of one process.
type Config struct {
	// StoreURL is the event store: a SQLite file path, or an EventStoreDB
	// URL (esdb://... or esdb+discover://...). Required except for serve
	// (DefaultStorePath) and query-api (which ignores it).
	StoreURL string
	// RedisURL is the Redis of the read models, as package redisurl reads
	// it: redis://host:port/db for one server, redis+cluster://host:port?addr=host:port
	// for a Redis Cluster.
	// Empty means an embedded in-process Redis, which only serve allows.
	RedisURL string
	// Addr is the host:port the process listens on. Default DefaultAddr.
	Addr string
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// CommandURL is the command API's base URL (http://host:8081) that
	// query-api forwards the web page's commands to. Empty: the page of
	// query-api is read-only. serve has the command API in process.
	CommandURL string
	// AdminToken enables the web page's actions (a forced rebuild), which
	// must then carry it. Empty disables them.
	AdminToken string
	// MaxWaiters caps the queries waiting for ?after= at once (serve and
	// query-api); 0 means no cap. Default DefaultMaxWaiters.
	MaxWaiters int
	// BrokerURL is the broker the saga's relay publishes to and the saga
	// consumes from (serve and saga): nats://, amqp:// or redis://, as
	// package relay/broker reads it. Empty: serve uses an in-process
	// GoChannel, saga Redis Streams on RedisURL.
	BrokerURL string
	// BreakerFailures is how many consecutive failures of a dependency (the
	// store, Redis, the broker) open its circuit breaker. 0 means
	// breaker.DefaultFailures.
	BreakerFailures int
	// BreakerOpenFor is how long an open breaker answers 503 at once before
	// it lets a probe through. 0 means breaker.DefaultOpenFor.
	BreakerOpenFor time.Duration
	// StoreTimeout bounds each event store call of a command (append, read
	// of its stream). 0 means storebreaker.DefaultTimeout.
	StoreTimeout time.Duration
	// CartsPartitions splits the carts read model into that many partitions
	// by cart id (readmodel.Options.CartsPartitions), 1 to
	// readmodel.MaxCartsPartitions; serve and projector run it so. The
	// count is part of the model's version (schema.CartsVersionFor): a new
	// count is built beside the live model and switched to once caught up.
	// Query processes learn the count of the live build from Redis. 0 means
	// DefaultCartsPartitions.
	CartsPartitions int
	// TracesExporter turns OpenTelemetry tracing on: TracesOTLP (OTLP over
	// HTTP, set by the OTEL_EXPORTER_OTLP_* variables) or TracesConsole
	// (stdout). Empty or TracesNone: off.
	TracesExporter string
	// TracerProvider, when set, is used as it is and TracesExporter is
	// ignored; the caller stops it.
	TracerProvider trace.TracerProvider

	// Stdout receives the one line saying where the process listens. nil
	// means os.Stdout.
	Stdout io.Writer
	// Logger, when set, is used as it is and LogLevel is ignored. nil means
	// a text logger on os.Stderr at LogLevel.
	Logger *slog.Logger
}

// BindFlags registers the flags of role on fs, writing into c. Each flag
// defaults to its environment variable, else to the role's default; query-api
// has no --store flag, since it never opens the event store.
func (c *Config) BindFlags(fs *pflag.FlagSet, role Role) {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	if role != RoleQueryAPI {
		def := ""
		if role == RoleServe {
			def = DefaultStorePath
		}
		fs.StringVar(&c.StoreURL, "store", env(EnvStoreURL, def),
			"event store: a SQLite file path or sqlite:// URL (?sync=normal for speed over power-loss safety), a postgres:// or an esdb:// URL (env "+EnvStoreURL+")")
	}
	redisHelp := "Redis URL of the read models, e.g. redis://localhost:6379/0, or redis+cluster://h1:7000?addr=h2:7000 for a Redis Cluster (env " + EnvRedisURL + ")"
	if role == RoleServe {
		redisHelp = "Redis URL of the read models; empty runs an embedded Redis (env " + EnvRedisURL + ")"
	}
	if role != RoleCommandAPI {
		fs.StringVar(&c.RedisURL, "redis", env(EnvRedisURL, ""), redisHelp)
	}
	if role == RoleQueryAPI {
		fs.StringVar(&c.CommandURL, "command-url", env(EnvCommandURL, ""),
			"base URL of the command API the web page's commands go to, e.g. http://localhost:8081 (env "+EnvCommandURL+")")
	}
	if role == RoleServe || role == RoleQueryAPI {
		fs.StringVar(&c.AdminToken, "admin-token", env(EnvAdminToken, ""),
			"enables the web page's actions (rebuilds) for requests carrying this token; prefer the env var (env "+EnvAdminToken+")")
	}
	if role == RoleServe || role == RoleSaga {
		fs.StringVar(&c.BrokerURL, "broker", env(EnvBrokerURL, ""),
			"broker of the saga's events: nats://host:4222 (JetStream), amqp://user:pass@host:5672/ (RabbitMQ) or redis://host:6379 (redis+cluster://... for a Redis Cluster); empty: in-process for serve, Redis Streams on --redis for saga (env "+EnvBrokerURL+")")
	}
	fs.StringVar(&c.Addr, "addr", env(EnvAddr, DefaultAddr(role)), "host:port to listen on (env "+EnvAddr+")")
	fs.StringVar(&c.TracesExporter, "traces-exporter", env(EnvTracesExporter, ""),
		"OpenTelemetry traces: otlp (OTLP over HTTP, see OTEL_EXPORTER_OTLP_ENDPOINT), console (stdout) or none; empty: none (env "+EnvTracesExporter+")")
	fs.StringVar(&c.LogLevel, "log-level", env(EnvLogLevel, "info"), "debug, info, warn or error (env "+EnvLogLevel+")")
	fs.IntVar(&c.BreakerFailures, "breaker-failures", envInt(EnvBreakerFailures, breaker.DefaultFailures),
		"consecutive failures of a dependency that open its circuit breaker (env "+EnvBreakerFailures+")")
	fs.DurationVar(&c.BreakerOpenFor, "breaker-open-for", envDuration(EnvBreakerOpenFor, breaker.DefaultOpenFor),
		"how long an open circuit breaker answers 503 before it lets a probe through (env "+EnvBreakerOpenFor+")")
	if needsStore(role) {
		fs.DurationVar(&c.StoreTimeout, "store-timeout", envDuration(EnvStoreTimeout, storebreaker.DefaultTimeout),
			"bound on one event store call of a command (env "+EnvStoreTimeout+")")
	}
	if runsProjections(role) {
		fs.IntVar(&c.CartsPartitions, "carts-partitions", envInt(EnvCartsPartitions, DefaultCartsPartitions),
			"partitions of the carts read model, by cart id; a new count is a new version of the model, built beside the live one (env "+EnvCartsPartitions+")")
	}
	if role == RoleServe || role == RoleQueryAPI {
		def := DefaultMaxWaiters
		if v, ok := os.LookupEnv(EnvMaxWaiters); ok {
			if def, _ = strconv.Atoi(v); def < 0 || strconv.Itoa(def) != strings.TrimSpace(v) {
				def = -1 // refused by Validate
			}
		}
		fs.IntVar(&c.MaxWaiters, "max-waiters", def,
			"queries waiting for ?after= at once; the excess gets 503 with Retry-After; 0: no cap (env "+EnvMaxWaiters+")")
	}
}

// SettingError is a missing or unusable setting. Its message is one line that
// names the setting the way a user sets it.
type SettingError struct {
	// Env is the environment variable, Flag the flag without dashes.
	Env, Flag string
	// Reason says what is wrong.
	Reason string
	// Err is the cause, if any.
	Err error
}

func (e *SettingError) Error() string {
	msg := fmt.Sprintf("%s (--%s): %s", e.Env, e.Flag, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	// One line, whatever the cause says.
	return strings.Join(strings.Fields(msg), " ")
}

// Unwrap returns the cause.
func (e *SettingError) Unwrap() error { return e.Err }

func storeError(reason string, err error) error {
	return &SettingError{Env: EnvStoreURL, Flag: "store", Reason: reason, Err: err}
}

func redisError(reason string, err error) error {
	return &SettingError{Env: EnvRedisURL, Flag: "redis", Reason: reason, Err: err}
}

func addrError(reason string, err error) error {
	return &SettingError{Env: EnvAddr, Flag: "addr", Reason: reason, Err: err}
}

// needsStore and needsRedis say which backing services a role uses.
func needsStore(r Role) bool { return r != RoleQueryAPI }
func needsRedis(r Role) bool { return r != RoleCommandAPI }

// runsProjections says which roles run the projection runners.
func runsProjections(r Role) bool { return r == RoleServe || r == RoleProjector }

// Validate checks the settings role uses, without connecting to anything.
// Errors are *SettingError values.
func (c Config) Validate(role Role) error {
	if !validRole(role) {
		return fmt.Errorf("app: unknown role %q", role)
	}
	if needsStore(role) {
		if _, err := parseStoreURL(c.StoreURL); err != nil {
			return err
		}
	}
	if needsRedis(role) {
		if c.RedisURL == "" && role != RoleServe {
			return redisError("required (an embedded Redis is only for serve), e.g. redis://localhost:6379", nil)
		}
		if c.RedisURL != "" {
			if _, err := parseRedisURL(c.RedisURL); err != nil {
				return err
			}
		}
	}
	if err := validTracesExporter(c.TracesExporter); err != nil {
		return err
	}
	if c.CommandURL != "" {
		if u, err := url.Parse(c.CommandURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &SettingError{Env: EnvCommandURL, Flag: "command-url",
				Reason: fmt.Sprintf("%q is not an http(s)://host:port URL", c.CommandURL)}
		}
	}
	if c.BrokerURL != "" && (role == RoleServe || role == RoleSaga) {
		if err := (broker.Config{URL: c.BrokerURL}).Validate(); err != nil {
			return &SettingError{Env: EnvBrokerURL, Flag: "broker", Reason: "unusable", Err: err}
		}
	}
	if c.Addr == "" {
		return addrError("required, e.g. 127.0.0.1:8080", nil)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return addrError(fmt.Sprintf("%q is not host:port", c.Addr), nil)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.BreakerFailures < 0 {
		return &SettingError{Env: EnvBreakerFailures, Flag: "breaker-failures", Reason: "must be a non-negative integer"}
	}
	if c.BreakerOpenFor < 0 {
		return &SettingError{Env: EnvBreakerOpenFor, Flag: "breaker-open-for", Reason: "must be a non-negative duration such as 5s"}
	}
	if c.StoreTimeout < 0 {
		return &SettingError{Env: EnvStoreTimeout, Flag: "store-timeout", Reason: "must be a non-negative duration such as 5s"}
	}
	if runsProjections(role) && (c.CartsPartitions < 0 || c.CartsPartitions > readmodel.MaxCartsPartitions) {
		return &SettingError{Env: EnvCartsPartitions, Flag: "carts-partitions",
			Reason: fmt.Sprintf("must be an integer from 1 to %d", readmodel.MaxCartsPartitions)}
	}
	if c.MaxWaiters < 0 {
		return &SettingError{Env: EnvMaxWaiters, Flag: "max-waiters", Reason: "must be a non-negative integer"}
	}
	return nil
}

func validRole(r Role) bool {
	for _, k := range Roles() {
		if k == r {
			return true
		}
	}
	return false
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, &SettingError{Env: EnvLogLevel, Flag: "log-level",
			Reason: fmt.Sprintf("%q is not one of debug, info, warn, error", s)}
	}
	return l, nil
}

// envInt reads an integer environment variable; a value that is not one
// becomes -1, which Validate refuses with the setting's name.
func envInt(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// envDuration reads a duration environment variable (5s, 250ms); a value
// that is not one becomes -1, which Validate refuses with the setting's name.
func envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return -1
	}
	return d
}
