package brokertest

import (
	"testing"

	"github.com/nats-io/nats.go"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// DeleteNATSStreams deletes the JetStream streams when the test ends, so
// that runs leave nothing on a shared server. Errors are logged, not fatal.
func DeleteNATSStreams(t testing.TB, url string, streams ...string) {
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Logf("brokertest: cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			t.Logf("brokertest: cleanup: %v", err)
			return
		}
		for _, s := range streams {
			if err := js.DeleteStream(s); err != nil {
				t.Logf("brokertest: cleanup: delete stream %s: %v", s, err)
			}
		}
	})
}

// DeleteAMQP deletes the RabbitMQ queues and exchanges when the test ends.
// Errors are logged, not fatal.
func DeleteAMQP(t testing.TB, url string, queues, exchanges []string) {
	t.Cleanup(func() {
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Logf("brokertest: cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("brokertest: cleanup: %v", err)
			return
		}
		for _, q := range queues {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Logf("brokertest: cleanup: delete queue %s: %v", q, err)
			}
		}
		for _, x := range exchanges {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Logf("brokertest: cleanup: delete exchange %s: %v", x, err)
			}
		}
	})
}
