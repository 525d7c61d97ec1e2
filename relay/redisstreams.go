package relay

import (
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// ErrPublisherClosed means Publish was called on a RedisStreamsPublisher after
// Close.
var ErrPublisherClosed = errors.New("relay: redis streams publisher closed")

// RedisStreamsConfig configures a RedisStreamsPublisher. Its fields mean what
// the same fields of redisstream.PublisherConfig mean, so a configuration
// moves between the two unchanged; every field may be left zero.
type RedisStreamsConfig struct {
	// Marshaller turns a message into the fields of its stream entry. It must
	// match the Unmarshaller of the consumers' redisstream.Subscriber. Default
	// redisstream.DefaultMarshallerUnmarshaller.
	Marshaller redisstream.Marshaller
	// Maxlens bounds the length of the streams it names (topic → entries);
	// a negative value means DefaultMaxlen, as in redisstream.PublisherConfig.
	// Trimming is approximate (XADD MAXLEN ~), as watermill's: Redis drops
	// only whole internal nodes, so a stream may hold somewhat more entries
	// than its bound, never fewer.
	Maxlens map[string]int64
	// DefaultMaxlen bounds every stream Maxlens does not name. Zero or
	// negative: unbounded.
	DefaultMaxlen int64
}

// RedisStreamsPublisher is a watermill message.Publisher writing to Redis
// Streams in the format of watermill-redisstream, so that
// redisstream.Subscriber reads what it writes. Unlike redisstream.Publisher,
// which waits for one XADD round trip per message, it sends all the messages
// of a Publish call in one pipeline: one round trip per call. Create one with
// NewRedisStreamsPublisher; it is safe for concurrent use.
type RedisStreamsPublisher struct {
	client  redis.UniversalClient
	marshal redisstream.Marshaller
	maxlens map[string]int64
	maxlen  int64
	closed  atomic.Bool
}

var _ message.Publisher = (*RedisStreamsPublisher)(nil)

// NewRedisStreamsPublisher returns a publisher writing through client, which
// it does not own: Close leaves it open. It fails, with an error matching
// ErrInvalidConfig, only when client is nil.
func NewRedisStreamsPublisher(client redis.UniversalClient, cfg RedisStreamsConfig) (*RedisStreamsPublisher, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: redis streams publisher: client is nil", ErrInvalidConfig)
	}
	p := &RedisStreamsPublisher{client: client, marshal: cfg.Marshaller,
		maxlens: maps.Clone(cfg.Maxlens), maxlen: cfg.DefaultMaxlen}
	if p.marshal == nil {
		p.marshal = redisstream.DefaultMarshallerUnmarshaller{}
	}
	for topic, n := range p.maxlens {
		if n < 0 {
			p.maxlens[topic] = p.maxlen
		}
	}
	return p, nil
}

// Publish appends msgs, in order, to the stream named topic, with one XADD per
// message sent in a single pipeline. The pipeline runs under the first
// message's context (message.Message.Context).
//
// Every message is marshalled before anything is sent, so a message the
// Marshaller refuses (or a nil one) fails the call with nothing written. A
// Redis or network error fails the whole call; by then Redis may have added
// some of the entries, so retrying the call, as the relay does, can add them
// twice: at least once, which consumers absorb by de-duplicating on the
// message UUID. Publish waits no longer than the client's own timeouts.
func (p *RedisStreamsPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("%w: publish %d messages to %q", ErrPublisherClosed, len(msgs), topic)
	}
	if len(msgs) == 0 {
		return nil
	}
	maxlen, ok := p.maxlens[topic]
	if !ok {
		maxlen = p.maxlen
	}
	args := make([]redis.XAddArgs, len(msgs))
	for i, msg := range msgs {
		if msg == nil {
			return fmt.Errorf("relay: redis streams: publish to %q: message %d of %d is nil", topic, i+1, len(msgs))
		}
		values, err := p.marshal.Marshal(topic, msg)
		if err != nil {
			return fmt.Errorf("relay: redis streams: publish to %q: marshal message %s: %w", topic, msg.UUID, err)
		}
		args[i] = redis.XAddArgs{Stream: topic, Values: values, MaxLen: maxlen, Approx: true}
	}
	ctx := msgs[0].Context()
	pipe := p.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(msgs))
	for i := range args {
		cmds[i] = pipe.XAdd(ctx, &args[i])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Name the first message whose XADD failed and how many Redis
		// confirmed before it, so the error tells what a retry may duplicate.
		for i, cmd := range cmds {
			if cmd.Err() != nil {
				return fmt.Errorf("relay: redis streams: publish %d messages to %q: XADD of message %s failed, %d confirmed before it: %w",
					len(msgs), topic, msgs[i].UUID, i, cmd.Err())
			}
		}
		return fmt.Errorf("relay: redis streams: publish %d messages to %q: %w", len(msgs), topic, err)
	}
	return nil
}

// Close makes later Publish calls fail with ErrPublisherClosed. It closes
// nothing: the client belongs to the caller. Calls already under way finish.
func (p *RedisStreamsPublisher) Close() error {
	p.closed.Store(true)
	return nil
}
