package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/eventline/eventline/redisurl"
)

// Schemes Open accepts.
const (
	SchemeNATS   = "nats"
	SchemeAMQP   = "amqp"
	SchemeAMQPS  = "amqps"
	SchemeRedis  = "redis"
	SchemeRedisS = "rediss"
	// SchemeRedisCluster and SchemeRedisClusterS name Redis Streams on a
	// Redis Cluster, in package redisurl's form:
	// redis+cluster://host:port?addr=host:port.
	SchemeRedisCluster  = redisurl.SchemeCluster
	SchemeRedisClusterS = redisurl.SchemeClusterTLS
)

// DefaultAckWait is Config.AckWait when it is zero.
const DefaultAckWait = 30 * time.Second

// ErrInvalidConfig means a Config failed Validate.
var ErrInvalidConfig = errors.New("broker: invalid config")

// Config says which broker to use and how to consume from it.
type Config struct {
	// URL chooses the broker by its scheme: nats://, amqp:// (amqps://),
	// redis:// (rediss://) or, for Redis Streams on a Redis Cluster,
	// redis+cluster:// (rediss+cluster://) as package redisurl reads it.
	// Required.
	URL string
	// Group is the consumer group of the Subscriber: subscribers with the
	// same group share a topic's messages, each message going to one of
	// them. Replicas of one consumer (the saga) share one group. Required
	// for Subscriber; on RabbitMQ the Publisher also declares the group's
	// queue, so that what it publishes first is kept for the group.
	Group string
	// Consumer names this process within the group on Redis Streams, where
	// each consumer has a name. Default "<hostname>-<pid>".
	Consumer string
	// AckWait is how long a delivered message may stay unacknowledged before
	// the broker delivers it again (NATS AckWait; Redis Streams: idle time
	// after which another consumer of the group claims it). RabbitMQ
	// redelivers when the consumer's connection or channel closes, whatever
	// AckWait says. Default DefaultAckWait.
	AckWait time.Duration
	// Logger receives the transports' logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a Config that Open would refuse, without connecting. The
// error matches ErrInvalidConfig and says what is wrong with the URL without
// repeating a password it may hold.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := parseURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("Config.AckWait %s is negative", c.AckWait))
	}
	if strings.ContainsAny(c.Group, " \t\r\n*>") {
		errs = append(errs, fmt.Errorf("Config.Group %q must not hold spaces, '*' or '>'", c.Group))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Scheme returns the broker a URL names ("nats", "amqp", "redis"; the TLS
// and cluster schemes map to their plain names), or an error matching ErrInvalidConfig.
func Scheme(rawURL string) (string, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch u.Scheme {
	case SchemeAMQPS:
		return SchemeAMQP, nil
	case SchemeRedisS, SchemeRedisCluster, SchemeRedisClusterS:
		return SchemeRedis, nil
	}
	return u.Scheme, nil
}

func parseURL(rawURL string) (*url.URL, error) {
	if rawURL == "" {
		return nil, errors.New("Config.URL is required: nats://, amqp:// or redis://")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("Config.URL is not a URL: %w", err)
	}
	switch u.Scheme {
	case SchemeNATS, SchemeAMQP, SchemeAMQPS:
	case SchemeRedis, SchemeRedisS, SchemeRedisCluster, SchemeRedisClusterS:
		if _, err := redisurl.Parse(rawURL); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("Config.URL scheme %q is not one of nats, amqp, amqps, redis, rediss, redis+cluster, rediss+cluster", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("Config.URL %s has no host", u.Redacted())
	}
	return u, nil
}

// Broker is a connected Publisher and Subscriber. Create one with Open and
// Close it when done; the relay and the saga do not close what they are given.
type Broker struct {
	scheme string
	pub    message.Publisher
	sub    message.Subscriber
	closes []func() error
}

// Scheme is the broker's kind: "nats", "amqp" or "redis".
func (b *Broker) Scheme() string { return b.scheme }

// Publisher publishes to the broker; it is safe for concurrent use.
func (b *Broker) Publisher() message.Publisher { return b.pub }

// Subscriber consumes in Config.Group, or is nil when the Config had no
// group.
func (b *Broker) Subscriber() message.Subscriber { return b.sub }

// Close closes the subscriber, then the publisher, then the connections
// they used.
func (b *Broker) Close() error {
	var errs []error
	for _, c := range b.closes {
		errs = append(errs, c())
	}
	b.closes = nil
	return errors.Join(errs...)
}

// Open connects to the broker cfg.URL names. It returns a Broker with a
// Publisher, and a Subscriber when cfg.Group is set. A broker that does not
// answer fails Open (NATS, RabbitMQ); Redis connects lazily.
func Open(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	scheme, _ := Scheme(cfg.URL)
	wlog := watermill.NewSlogLogger(cfg.Logger.With("component", "watermill", "broker", scheme))
	var b *Broker
	var err error
	switch scheme {
	case SchemeNATS:
		b, err = openNATS(cfg, wlog)
	case SchemeAMQP:
		b, err = openAMQP(cfg, wlog)
	default:
		b, err = openRedis(cfg, wlog)
	}
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", redacted(cfg.URL), err)
	}
	b.scheme = scheme
	return b, nil
}

func redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(bad URL)"
	}
	return u.Redacted()
}
