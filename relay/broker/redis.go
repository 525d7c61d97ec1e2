package broker

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/eventline/eventline/redisurl"
	"github.com/eventline/eventline/relay"
)

func openRedis(cfg Config, wlog watermill.LoggerAdapter) (*Broker, error) {
	opts, err := redisurl.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	client := opts.NewClient()
	b := &Broker{}
	// The pipelining publisher: one round trip per Publish call.
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	b.pub = pub
	if cfg.Group != "" {
		// redisstream.Subscriber closes the client it is given, so it gets
		// its own.
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: opts.NewClient(), ConsumerGroup: cfg.Group, Consumer: cfg.Consumer,
			MaxIdleTime: cfg.AckWait, ClaimInterval: min(cfg.AckWait/2, redisstream.DefaultClaimInterval),
		}, wlog)
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		b.sub = sub
		b.closes = append(b.closes, sub.Close)
	}
	b.closes = append(b.closes, pub.Close, client.Close)
	return b, nil
}
