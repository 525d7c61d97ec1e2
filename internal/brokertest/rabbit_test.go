package brokertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/eventline/eventline/internal/brokertest"
)

// TestRabbitRestartKeepsDurableMessages publishes persistent messages to a
// durable queue of a private node, stops the node gracefully, starts it,
// kills it, starts it again: the messages are in the queue after each
// restart, and the node does not answer while it is down.
func TestRabbitRestartKeepsDurableMessages(t *testing.T) {
	r := brokertest.StartRabbit(t)
	if r.URL == "amqp://guest:guest@127.0.0.1:5672/" {
		t.Fatalf("private node on the system node's port: %s", r.URL)
	}
	queue := brokertest.Name("el.test.restart.")
	const n = 5
	// channel opens a connection to the node and a channel on it.
	channel := func() (*amqp091.Channel, func()) {
		t.Helper()
		conn, err := amqp091.Dial(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := conn.Channel()
		if err != nil {
			_ = conn.Close()
			t.Fatal(err)
		}
		return ch, func() { _ = conn.Close() }
	}
	publish := func(from int) {
		t.Helper()
		ch, closeConn := channel()
		defer closeConn()
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		// A transaction: committed means on disk.
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			if err := ch.PublishWithContext(context.Background(), "", queue, false, false,
				amqp091.Publishing{DeliveryMode: amqp091.Persistent, MessageId: fmt.Sprint(i), Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := ch.TxCommit(); err != nil {
			t.Fatal(err)
		}
	}
	inQueue := func() int {
		t.Helper()
		ch, closeConn := channel()
		defer closeConn()
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}

	publish(0)
	r.Stop()
	if r.Running() {
		t.Fatal("node still running after Stop")
	}
	if c, err := amqp091.DialConfig(r.URL, amqp091.Config{Dial: amqp091.DefaultDial(time.Second)}); err == nil {
		_ = c.Close()
		t.Fatal("a stopped node accepted a connection")
	}
	r.Start()
	if got := inQueue(); got != n {
		t.Fatalf("after a graceful restart the queue holds %d messages, want %d", got, n)
	}

	publish(n)
	r.Kill()
	r.Start()
	if got := inQueue(); got != 2*n {
		t.Fatalf("after a kill and a start the queue holds %d messages, want %d", got, 2*n)
	}
}
