package broker

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

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
	// queues), so a publish the relay counts as done is in the queue. One
	// commit per batch instead of a confirm per message (watermill-amqp's
	// ConfirmDelivery waits for each in turn): same guarantee, a fraction of
	// the round trips and of the broker's disk syncs.
	c.Publish.Transactional = true
	c.Publish.ChannelPoolSize = 1
	return c
}

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
