// Package pubbreaker puts a breaker.Breaker around a watermill
// message.Publisher (the broker of the relay and the saga), so that while the
// broker is down a publish fails at once and the caller backs off, instead of
// every publish waiting out the transport's timeouts.
package pubbreaker

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/eventline/eventline/breaker"
)

// Publisher is a message.Publisher whose Publish goes through a breaker.
type Publisher struct {
	pub message.Publisher
	b   *breaker.Breaker
}

var _ message.Publisher = (*Publisher)(nil)

// Wrap returns pub behind b. Closing the returned Publisher closes pub.
func Wrap(pub message.Publisher, b *breaker.Breaker) (*Publisher, error) {
	if pub == nil || b == nil {
		return nil, errors.New("pubbreaker: Wrap needs a publisher and a breaker")
	}
	return &Publisher{pub: pub, b: b}, nil
}

// Publish publishes through the breaker: every error of the publisher counts
// as a failure of the broker.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	return p.b.Do(func() error { return p.pub.Publish(topic, msgs...) })
}

// Close closes the publisher behind the breaker.
func (p *Publisher) Close() error { return p.pub.Close() }
