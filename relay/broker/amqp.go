package broker

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// AMQPReconnectMaxInterval is the longest wait between two attempts to
// reconnect to RabbitMQ after the connection dropped: the delay, at worst,
// between the broker accepting connections again and the relay and the saga
// using it. watermill-amqp's default is a minute.
const AMQPReconnectMaxInterval = time.Second

// AMQPQueueName is the RabbitMQ queue of group on topic.
func AMQPQueueName(topic, group string) string { return topic + "_" + group }

// groupQueueBuilder declares, beside each topic's exchange, the group's queue
// bound to it, so that the publisher's first messages wait in the queue for
// the group's first consumer instead of being dropped by an exchange with no
// queue.
type groupQueueBuilder struct {
	wmamqp.DefaultTopologyBuilder
	group string
}

func (b *groupQueueBuilder) ExchangeDeclare(ch *amqp091.Channel, exchange string, cfg wmamqp.Config) error {
	if err := b.DefaultTopologyBuilder.ExchangeDeclare(ch, exchange, cfg); err != nil {
		return err
	}
	if b.group == "" {
		return nil
	}
	// The exchange is named after the topic (GenerateExchangeNameTopicName).
	queue := AMQPQueueName(exchange, b.group)
	if _, err := ch.QueueDeclare(queue, cfg.Queue.Durable, cfg.Queue.AutoDelete, cfg.Queue.Exclusive, false, cfg.Queue.Arguments); err != nil {
		return fmt.Errorf("declare queue %q: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "", exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to %q: %w", queue, exchange, err)
	}
	return nil
}

func amqpConfig(cfg Config) wmamqp.Config {
	c := wmamqp.NewDurablePubSubConfig(cfg.URL, wmamqp.GenerateQueueNameTopicNameWithSuffix(cfg.Group))
	c.TopologyBuilder = &groupQueueBuilder{group: cfg.Group}
	// Each Publish call is one AMQP transaction: it returns once the broker
	// committed every message of the batch (persistent messages in durable
	// queues, on disk), so a publish the relay counts as done is in the
	// queue and survives a broker restart or crash. One commit per batch
	// instead of a confirm per message (watermill-amqp's ConfirmDelivery
	// waits for each in turn): same guarantee, a fraction of the round trips
	// and of the broker's disk syncs.
	c.Publish.Transactional = true
	// A channel per Publish call (ChannelPoolSize 0), not a pool: in
	// watermill-amqp v3.0.2 a pooled channel whose connection dropped is
	// reopened by pooledChannelProvider.Channel (channelprovider.go:241), and
	// when that reopening fails, on a connection that died after Publish
	// checked IsConnected, the channel never returns to the pool; with the
	// pool empty every later Publish waits forever. A fresh channel costs
	// two round trips per batch, next to the commit's disk sync.
	c.Publish.ChannelPoolSize = 0
	// Reconnect within a second of the broker's return; watermill-amqp's
	// default backs off to a minute between attempts.
	c.Connection.Reconnect = &wmamqp.ReconnectConfig{
		BackoffInitialInterval:     100 * time.Millisecond,
		BackoffRandomizationFactor: 0.5,
		BackoffMultiplier:          1.5,
		BackoffMaxInterval:         AMQPReconnectMaxInterval,
	}
	return c
}

// The reconnection of watermill-amqp v3.0.2 is a data race, reported by the
// race detector when RabbitMQ goes away while the relay publishes or the saga
// consumes: ConnectionWrapper.handleConnectionClose replaces the channel
// ConnectionWrapper.connected without a lock (connection.go:139 on a dropped
// connection, :136 on Close) while Publish (publisher.go:101) and the
// subscriber (subscriber.go:113, :176, :291) read it through IsConnected
// (connection.go:114) or Connected. Nothing outside the library can order
// those accesses; in practice a reader sees the old channel (closed: "not
// connected" or a failed channel open, retried) or the new one. The tests
// that restart RabbitMQ therefore run in builds without -race (.ci/run).

func openAMQP(cfg Config, wlog watermill.LoggerAdapter) (*Broker, error) {
	b := &Broker{}
	pub, err := wmamqp.NewPublisher(amqpConfig(cfg), wlog)
	if err != nil {
		return nil, err
	}
	if cfg.Group != "" {
		sub, err := wmamqp.NewSubscriber(amqpConfig(cfg), wlog)
		if err != nil {
			_ = pub.Close()
			return nil, err
		}
		b.sub = sub
		b.closes = append(b.closes, sub.Close)
	}
	b.pub = pub
	b.closes = append(b.closes, pub.Close)
	return b, nil
}
