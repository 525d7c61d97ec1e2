package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// StreamName is the JetStream stream (and the part of a durable consumer's
// name) that holds topic: the topic with every character a stream name
// refuses replaced by '_'.
func StreamName(topic string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, topic)
}

// natsStreams creates each topic's stream once per connection.
type natsStreams struct {
	js    nats.JetStreamContext
	mu    sync.Mutex
	ready map[string]bool
}

func (s *natsStreams) ensure(topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready[topic] {
		return nil
	}
	name := StreamName(topic)
	_, err := s.js.StreamInfo(name)
	if errors.Is(err, nats.ErrStreamNotFound) {
		_, err = s.js.AddStream(&nats.StreamConfig{Name: name, Subjects: []string{topic}, Storage: nats.FileStorage})
		if errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			err = nil // another process created it meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("jetstream stream %q for topic %q: %w", name, topic, err)
	}
	s.ready[topic] = true
	return nil
}

type natsPublisher struct {
	*wmnats.Publisher
	streams *natsStreams
}

func (p natsPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.streams.ensure(topic); err != nil {
		return err
	}
	return p.Publisher.Publish(topic, msgs...)
}

type natsSubscriber struct {
	*wmnats.Subscriber
	streams *natsStreams
}

func (s natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.streams.ensure(topic); err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

func natsConnect(cfg Config, name string) (*nats.Conn, nats.JetStreamContext, error) {
	// Reconnect for ever: a broker restart must not end the process's
	// publishing or consuming; the relay retries failed publishes.
	nc, err := nats.Connect(cfg.URL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	// Fail now rather than at the first publish when JetStream is off.
	if _, err := js.AccountInfo(); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream (is the server started with -js?): %w", err)
	}
	return nc, js, nil
}

func openNATS(cfg Config, wlog watermill.LoggerAdapter) (*Broker, error) {
	b := &Broker{}
	pc, pjs, err := natsConnect(cfg, "eventline-publisher")
	if err != nil {
		return nil, err
	}
	pub, err := wmnats.NewPublisherWithNatsConn(pc, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		// Nats-Msg-Id = message UUID: JetStream drops a re-publication
		// within its duplicate window.
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, wlog)
	if err != nil {
		pc.Close()
		return nil, err
	}
	b.pub = natsPublisher{Publisher: pub, streams: &natsStreams{js: pjs, ready: map[string]bool{}}}
	if cfg.Group != "" {
		sc, sjs, err := natsConnect(cfg, "eventline-subscriber-"+cfg.Group)
		if err != nil {
			_ = pub.Close()
			return nil, err
		}
		group := cfg.Group
		sub, err := wmnats.NewSubscriberWithNatsConn(sc, wmnats.SubscriberSubscriptionConfig{
			Unmarshaler:       &wmnats.NATSMarshaler{},
			SubjectCalculator: wmnats.DefaultSubjectCalculator,
			QueueGroupPrefix:  group,
			AckWaitTimeout:    cfg.AckWait,
			CloseTimeout:      cfg.AckWait,
			JetStream: wmnats.JetStreamConfig{
				// One durable consumer per (group, topic), shared by the
				// group's subscribers through the queue group.
				DurablePrefix: group,
				DurableCalculator: func(prefix, subject string) string {
					return StreamName(prefix + "_" + subject)
				},
				SubscribeOptions: []nats.SubOpt{
					nats.ManualAck(), nats.AckExplicit(), nats.DeliverAll(),
					nats.AckWait(cfg.AckWait),
				},
			},
		}, wlog)
		if err != nil {
			sc.Close()
			_ = pub.Close()
			return nil, err
		}
		b.sub = natsSubscriber{Subscriber: sub, streams: &natsStreams{js: sjs, ready: map[string]bool{}}}
		b.closes = append(b.closes, sub.Close)
	}
	b.closes = append(b.closes, pub.Close)
	return b, nil
}
