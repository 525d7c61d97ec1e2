// Package redisurl turns a URL into a go-redis client: the one way every
// eventline role and tool connects to Redis, whether a single server or a
// Redis Cluster. The URL alone decides which:
//
//	redis://[user:password@]host:port[/db][?option=value...]
//	rediss://...                      one server (TLS): redis.ParseURL
//	unix://[user:password@]/path/to/redis.sock[?db=n]   one server on a Unix socket
//	redis+cluster://[user:password@]host:port[?addr=host:port&addr=...][&option=value...]
//	rediss+cluster://...              a Redis Cluster (TLS): redis.ParseClusterURL
//
// A cluster URL names one or more seed nodes (the host of the URL and each
// addr parameter); the client learns the rest of the cluster from them. The
// options are go-redis' (dial_timeout, read_timeout, pool_size, ...). A
// cluster has only database 0, so a cluster URL with a database is refused.
//
// A client built here for a cluster reloads the cluster's layout at least
// every ClusterStateReloadInterval while it is used: go-redis learns of a
// failover from MOVED replies, but a master that died answers nothing, and
// with go-redis' own default (60 s) a client would go on calling the dead
// node for up to a minute after its replica took over.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The schemes of a Redis Cluster URL.
const (
	SchemeCluster    = "redis+cluster"
	SchemeClusterTLS = "rediss+cluster"
)

// ClusterStateReloadInterval bounds how long a cluster client built here
// keeps a layout of the cluster without asking it again (see the package
// documentation).
const ClusterStateReloadInterval = time.Second

// ErrInvalidURL means a string is not a Redis URL this package reads.
var ErrInvalidURL = errors.New("redisurl: invalid Redis URL")

// Options is a parsed URL: exactly one of Single (redis://, rediss://, unix://) and
// Cluster (redis+cluster://, rediss+cluster://) is set. Callers may change
// the options (timeouts, pool sizes) before NewClient.
type Options struct {
	Single  *redis.Options
	Cluster *redis.ClusterOptions
}

// Parse reads s. Errors match ErrInvalidURL and never quote a password.
func Parse(s string) (Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return Options{}, fmt.Errorf("%w: %s does not parse as a URL", ErrInvalidURL, Redact(s))
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(s)
		if err != nil {
			return Options{}, fmt.Errorf("%w: %s: %w", ErrInvalidURL, Redact(s), err)
		}
		return Options{Single: o}, nil
	case SchemeCluster, SchemeClusterTLS:
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return Options{}, fmt.Errorf("%w: %s: a Redis Cluster has only database 0, the URL names %q", ErrInvalidURL, Redact(s), p)
		}
		if u.Host == "" {
			return Options{}, fmt.Errorf("%w: %s names no host", ErrInvalidURL, Redact(s))
		}
		v := *u
		v.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		v.Path = ""
		o, err := redis.ParseClusterURL(v.String())
		if err != nil {
			return Options{}, fmt.Errorf("%w: %s: %w", ErrInvalidURL, Redact(s), err)
		}
		return Options{Cluster: o}, nil
	case "":
		return Options{}, fmt.Errorf("%w: %s has no scheme; want redis://host:port or %s://host:port?addr=host:port", ErrInvalidURL, Redact(s), SchemeCluster)
	}
	return Options{}, fmt.Errorf("%w: unsupported scheme %q; want redis, rediss, unix, %s or %s", ErrInvalidURL, u.Scheme, SchemeCluster, SchemeClusterTLS)
}

// IsCluster reports whether s has a cluster scheme. It does not validate
// the rest of s.
func IsCluster(s string) bool {
	return strings.HasPrefix(s, SchemeCluster+"://") || strings.HasPrefix(s, SchemeClusterTLS+"://")
}

// IsRedis reports whether s has one of the schemes Parse reads. It does not
// validate the rest of s.
func IsRedis(s string) bool {
	return IsCluster(s) || strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://") || strings.HasPrefix(s, "unix://")
}

// Addrs returns the server's address, or the cluster's seed addresses.
func (o Options) Addrs() []string {
	if o.Cluster != nil {
		return append([]string(nil), o.Cluster.Addrs...)
	}
	if o.Single != nil {
		return []string{o.Single.Addr}
	}
	return nil
}

// NewClient returns a client for the options: a *redis.ClusterClient or a
// *redis.Client. A cluster client's ClusterStateReloadInterval defaults to
// this package's.
func (o Options) NewClient() redis.UniversalClient {
	if o.Cluster != nil {
		c := *o.Cluster
		if c.ClusterStateReloadInterval == 0 {
			c.ClusterStateReloadInterval = ClusterStateReloadInterval
		}
		return redis.NewClusterClient(&c)
	}
	if o.Single == nil {
		return redis.NewClient(&redis.Options{})
	}
	c := *o.Single
	return redis.NewClient(&c)
}

// Open parses s and returns its client.
func Open(s string) (redis.UniversalClient, error) {
	o, err := Parse(s)
	if err != nil {
		return nil, err
	}
	return o.NewClient(), nil
}

// Redact quotes s for a message with any password in it replaced.
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return fmt.Sprintf("%q", u.Redacted())
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		return fmt.Sprintf("%q", "…"+s[at:])
	}
	return fmt.Sprintf("%q", s)
}
