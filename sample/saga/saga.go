package saga

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/relay/tracing"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
)

// ScopeName is the OpenTelemetry instrumentation scope of the saga's own
// spans ("order <status>").
const ScopeName = "github.com/eventline/eventline/sample/saga"

// Entity kinds, i.e. command.Config.Name of each handler: they name the
// streams ("cart-<id>") and must be the names the command API uses.
const (
	kindCart     = "cart"
	kindOrder    = "order"
	kindCustomer = "customer"
)

// Steps name the saga's commands; a command's id is "<event id>/<step>".
const (
	StepPlace   = "place"
	StepReserve = "reserve"
	StepConfirm = "confirm"
	StepReject  = "reject"
	StepReopen  = "reopen"
	StepRelease = "release"
)

var (
	// ErrRunning means Run was called on a Saga that already ran.
	ErrRunning = errors.New("saga: Run called twice; create a new Saga")
	// ErrMalformedEvent means a message claims to be one of the saga's events
	// but cannot be understood (bad metadata, data or stream id). It fails
	// every retry and ends in the poison topic.
	ErrMalformedEvent = errors.New("saga: malformed event")
	// ErrOrderNotFound means a customer event names an order that was never
	// placed. It is retried, then poisoned.
	ErrOrderNotFound = errors.New("saga: order not found")
	// ErrStopped means the router stopped while the context was still live,
	// e.g. because the subscriber was closed.
	ErrStopped = errors.New("saga: router stopped")
)

// Saga is the order/credit saga: it reacts to cart.checked_out,
// customer.credit_reserved and customer.credit_refused by sending commands to
// orders, customers and carts. See the package documentation.
type Saga struct {
	cfg       Config
	carts     *command.Handler[cart.State, cart.Command, cart.Event]
	orders    *command.Handler[order.State, order.Command, order.Event]
	customers *command.Handler[customer.State, customer.Command, customer.Event]
	messages  *prometheus.CounterVec
	metrics   *metrics
	tracer    trace.Tracer
	started   atomic.Bool
	running   chan struct{}
}

// New returns a Saga for cfg, or an error matching ErrInvalidConfig.
func New(cfg Config) (*Saga, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Topics = append([]string(nil), cfg.Topics...)
	s := &Saga{cfg: cfg, running: make(chan struct{}), tracer: noop.NewTracerProvider().Tracer(ScopeName)}
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(ScopeName)
	}
	var err error
	if s.carts, err = command.NewHandler(cfg.Store, cfg.Registry, cart.Decider, named(cfg.Command, kindCart)); err != nil {
		return nil, err
	}
	if s.orders, err = command.NewHandler(cfg.Store, cfg.Registry, order.Decider, named(cfg.Command, kindOrder)); err != nil {
		return nil, err
	}
	if s.customers, err = command.NewHandler(cfg.Store, cfg.Registry, customer.Decider, named(cfg.Command, kindCustomer)); err != nil {
		return nil, err
	}
	s.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eventline_saga_messages_total",
		Help: "Messages the order/credit saga received, by event type and result: handled, ignored (not a saga event) or failed (one failed attempt; it is retried, then poisoned).",
	}, []string{"type", "result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.messages); err != nil {
			// A second Saga in the same process (a restart) shares the counter.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("saga: register metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("saga: register metrics: %w", err)
			}
			s.messages = existing
		}
	}
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("saga: register metrics: %w", err)
	}
	return s, nil
}

func named(c command.Config, name string) command.Config {
	c.Name = name
	return c
}

// Running returns a channel that is closed once Run has subscribed to every
// topic. With a transport that drops messages nobody subscribed to
// (GoChannel), start the relay only after it is closed.
func (s *Saga) Running() <-chan struct{} { return s.running }

// Run subscribes to the topics and handles messages until ctx ends, then
// waits (at most Config.CloseTimeout) for the messages being handled, and
// returns nil. It returns an error when it cannot subscribe, when the router
// stops on its own (ErrStopped), or when called twice (ErrRunning). Messages
// not acked when Run returns are redelivered by the transport.
func (s *Saga) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	router, err := consume.NewRouter(consume.RouterConfig{
		Dedup:           s.cfg.Dedup,
		PoisonPublisher: s.cfg.Publisher,
		PoisonTopic:     s.cfg.PoisonTopic,
		MaxRetries:      s.cfg.MaxRetries,
		MinBackoff:      s.cfg.MinBackoff,
		MaxBackoff:      s.cfg.MaxBackoff,
		CloseTimeout:    s.cfg.CloseTimeout,
		Logger:          s.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("saga %q: %w", s.cfg.Name, err)
	}
	if s.cfg.TracerProvider != nil {
		// Innermost: each attempt at a message is a consumer span.
		router.AddMiddleware(tracing.Middleware(s.cfg.TracerProvider))
	}
	for _, topic := range s.cfg.Topics {
		router.AddConsumerHandler(s.cfg.Name+"/"+topic, topic, s.cfg.Subscriber, s.handle)
	}

	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(ctx) }()
	// The router stops when ctx ends only because the subscriptions close;
	// closing it here as well does not depend on the transport doing so.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = router.Close()
	}()
	defer wg.Wait()
	defer close(stop)

	select {
	case <-router.Running():
		close(s.running)
		s.cfg.Logger.InfoContext(ctx, "saga: running", "saga", s.cfg.Name, "topics", s.cfg.Topics)
	case err := <-routerDone:
		if err == nil && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("saga %q: %w", s.cfg.Name, errors.Join(ErrStopped, err))
	}
	err = <-routerDone
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("saga %q: %w", s.cfg.Name, errors.Join(ErrStopped, err))
}

// handle is the router handler: one message, one event.
func (s *Saga) handle(msg *message.Message) error {
	typ := msg.Metadata.Get(relay.MetaType)
	switch typ {
	case cart.TypeCheckedOut, customer.TypeCreditReserved, customer.TypeCreditRefused:
	default:
		// A shared topic carries every event of the store.
		s.messages.WithLabelValues("other", "ignored").Inc()
		return nil
	}
	err := s.handleEvent(msg)
	if errors.Is(err, ErrMalformedEvent) {
		// No retry can mend a malformed event: straight to the poison topic.
		err = consume.Permanent(err)
	}
	result := "handled"
	if err != nil {
		result = "failed"
	}
	s.messages.WithLabelValues(typ, result).Inc()
	return err
}

func (s *Saga) handleEvent(msg *message.Message) error {
	rec, err := consume.RecordFrom(msg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	v, err := s.cfg.Registry.Decode(rec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	// Detached from the message's cancellation: when Run's context ends, a
	// half-done handling finishes its commands instead of being interrupted
	// between two of them (the router then nacks or acks it as usual).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), s.cfg.HandleTimeout)
	defer cancel()
	ctx = command.CausedBy(ctx, rec)
	switch e := v.(type) {
	case cart.CheckedOut:
		return s.onCheckedOut(ctx, rec, e)
	case customer.CreditReserved:
		return s.onCreditReserved(ctx, rec, e)
	case customer.CreditRefused:
		return s.onCreditRefused(ctx, rec, e)
	}
	return fmt.Errorf("%w: event %s of type %q decodes to %T", ErrMalformedEvent, rec.ID, rec.Type, v)
}

// step makes the command for one step of reacting to rec idempotent: handling
// rec again, after a redelivery or a crash half-way, finds the step's events
// instead of deciding again.
func step(ctx context.Context, rec eventstore.Record, name string) context.Context {
	return command.WithID(ctx, rec.ID.String()+"/"+name)
}

// entityID returns the entity id of rec's stream of the given kind.
func entityID(rec eventstore.Record, kind string) (string, error) {
	id, ok := strings.CutPrefix(rec.StreamID, kind+"-")
	if !ok || command.ValidateID(id) != nil {
		return "", fmt.Errorf("%w: event %s of type %q is in stream %q, not a %s stream",
			ErrMalformedEvent, rec.ID, rec.Type, rec.StreamID, kind)
	}
	return id, nil
}

// onCheckedOut places the order, then acts on the order as it is now, not on
// what this handling did so far: a redelivery of the checkout may come after
// an earlier handling got half-way. A pending order gets its customer asked
// for credit. The customer answers with an event (credit_reserved or
// credit_refused) that the saga handles next; a customer who cannot be asked
// (never registered) is a refusal handled here. A rejected order has its
// compensation finished (the cart reopened), and is never asked credit for
// again, even if the customer could now pay: the order's rejection is final.
// A confirmed order needs nothing more.
func (s *Saga) onCheckedOut(ctx context.Context, rec eventstore.Record, e cart.CheckedOut) error {
	cartID, err := entityID(rec, kindCart)
	if err != nil {
		return err
	}
	items := make([]order.Line, len(e.Items))
	for i, l := range e.Items {
		items[i] = order.Line(l)
	}
	place := order.Place{OrderID: e.OrderID, CartID: cartID, CustomerID: e.CustomerID, Items: items, TotalCents: e.TotalCents}
	_, err = s.orders.Handle(step(ctx, rec, StepPlace), e.OrderID, place)
	s.metrics.step(StepPlace, err)
	if err != nil {
		return fmt.Errorf("saga: place order %q from cart %q (event %s): %w", e.OrderID, cartID, rec.ID, err)
	}
	o, err := s.loadOrder(ctx, e.OrderID)
	if err != nil {
		return err
	}
	switch o.Status {
	case order.StatusConfirmed:
		return nil
	case order.StatusRejected:
		return s.reopenCart(ctx, rec, o)
	case order.StatusNone:
		// Place succeeded, so the order exists: a store that lost it.
		return fmt.Errorf("%w: %q, placed by event %s but not found", ErrOrderNotFound, e.OrderID, rec.ID)
	}
	reserve := customer.ReserveCredit{OrderID: e.OrderID, AmountCents: e.TotalCents}
	_, err = s.customers.Handle(step(ctx, rec, StepReserve), e.CustomerID, reserve)
	s.metrics.step(StepReserve, err)
	if err == nil {
		return nil
	}
	// A refusal of the command itself is as final as a refused credit: the
	// order cannot be paid for, so it is rejected and the cart reopened.
	// Infrastructure failures are retried instead.
	if !errors.Is(err, command.ErrRejected) && !errors.Is(err, command.ErrInvalidID) {
		return fmt.Errorf("saga: reserve credit of customer %q for order %q (event %s): %w", e.CustomerID, e.OrderID, rec.ID, err)
	}
	cause := err
	if re := (*command.RejectedError)(nil); errors.As(err, &re) {
		cause = re.Err
	}
	reason := fmt.Sprintf("credit refused: %v", cause)
	if errors.Is(err, customer.ErrNotRegistered) {
		reason = fmt.Sprintf("unknown customer %q", e.CustomerID)
	}
	return s.compensate(ctx, rec, o, reason)
}

// onCreditReserved acts on the order as it is now. A pending order is
// confirmed. A rejected one (the customer was unknown at checkout, and a
// concurrent handling of the checkout reserved once they registered) keeps
// its rejection: the credit is released and the cart reopened, finishing the
// compensation whatever part of it an earlier handling did.
func (s *Saga) onCreditReserved(ctx context.Context, rec eventstore.Record, e customer.CreditReserved) error {
	o, err := s.loadOrder(ctx, e.OrderID)
	if err != nil {
		return err
	}
	switch o.Status {
	case order.StatusNone:
		return fmt.Errorf("%w: %q, credit reserved by event %s", ErrOrderNotFound, e.OrderID, rec.ID)
	case order.StatusConfirmed:
		return nil
	case order.StatusPending:
		_, err := s.orders.Handle(step(ctx, rec, StepConfirm), e.OrderID, order.Confirm{})
		s.metrics.step(StepConfirm, err)
		if err == nil {
			s.completed(ctx, e.OrderID, string(order.StatusConfirmed))
			s.cfg.Logger.InfoContext(ctx, "saga: order confirmed", "order", e.OrderID, "amount_cents", e.AmountCents)
			return nil
		}
		if !errors.Is(err, order.ErrNotPending) {
			return fmt.Errorf("saga: confirm order %q (event %s): %w", e.OrderID, rec.ID, err)
		}
		// Rejected since it was loaded: release instead.
		if o, err = s.loadOrder(ctx, e.OrderID); err != nil {
			return err
		}
		if o.Status != order.StatusRejected {
			return fmt.Errorf("saga: confirm order %q (event %s): refused while the order is %s", e.OrderID, rec.ID, o.Status)
		}
	}
	customerID, err := entityID(rec, kindCustomer)
	if err != nil {
		return err
	}
	_, err = s.customers.Handle(step(ctx, rec, StepRelease), customerID, customer.ReleaseCredit{OrderID: e.OrderID})
	s.metrics.step(StepRelease, err)
	if err != nil {
		return fmt.Errorf("saga: release credit of customer %q for rejected order %q (event %s): %w", customerID, e.OrderID, rec.ID, err)
	}
	s.cfg.Logger.InfoContext(ctx, "saga: credit released for a rejected order", "order", e.OrderID, "customer", customerID)
	return s.reopenCart(ctx, rec, o)
}

// onCreditRefused rejects the order and reopens its cart, or finishes that
// compensation when an earlier handling got half-way.
func (s *Saga) onCreditRefused(ctx context.Context, rec eventstore.Record, e customer.CreditRefused) error {
	o, err := s.loadOrder(ctx, e.OrderID)
	if err != nil {
		return err
	}
	if o.Status == order.StatusNone {
		return fmt.Errorf("%w: %q, credit refused by event %s", ErrOrderNotFound, e.OrderID, rec.ID)
	}
	return s.compensate(ctx, rec, o, e.Reason)
}

// compensate rejects order o when it is pending, then reopens its cart. It
// acts on o's state, reloaded after the rejection, so that each step is
// taken or skipped by what the order is, not by what this handling did: a
// retry after a failure between the two steps finds the order rejected and
// reopens the cart. An order confirmed meanwhile needs no compensation.
func (s *Saga) compensate(ctx context.Context, rec eventstore.Record, o order.State, reason string) error {
	if o.Status == order.StatusPending {
		reason = truncate(reason, min(order.MaxReasonLen, cart.MaxReasonLen))
		if reason == "" {
			reason = "credit refused"
		}
		_, err := s.orders.Handle(step(ctx, rec, StepReject), o.OrderID, order.Reject{Reason: reason})
		s.metrics.step(StepReject, err)
		if err == nil {
			s.completed(ctx, o.OrderID, string(order.StatusRejected))
		}
		if err != nil && !errors.Is(err, order.ErrNotPending) {
			return fmt.Errorf("saga: reject order %q (event %s): %w", o.OrderID, rec.ID, err)
		}
		if o, err = s.loadOrder(ctx, o.OrderID); err != nil {
			return err
		}
	}
	if o.Status != order.StatusRejected {
		s.cfg.Logger.WarnContext(ctx, "saga: nothing to compensate, the order is not rejected",
			"order", o.OrderID, "status", string(o.Status), "event", rec.ID.String())
		return nil
	}
	return s.reopenCart(ctx, rec, o)
}

// reopenCart reopens the cart of rejected order o, the last step of the
// compensation. The cart decides nothing when it was already reopened for o.
func (s *Saga) reopenCart(ctx context.Context, rec eventstore.Record, o order.State) error {
	reason := truncate(o.Reason, cart.MaxReasonLen)
	_, err := s.carts.Handle(step(ctx, rec, StepReopen), o.CartID, cart.Reopen{OrderID: o.OrderID, Reason: reason})
	s.metrics.step(StepReopen, err)
	if err != nil {
		return fmt.Errorf("saga: reopen cart %q for rejected order %q (event %s): %w", o.CartID, o.OrderID, rec.ID, err)
	}
	s.metrics.compensations.Inc()
	s.cfg.Logger.InfoContext(ctx, "saga: order rejected, cart reopened", "order", o.OrderID, "cart", o.CartID, "reason", o.Reason)
	return nil
}

// loadOrder folds an order's stream; an order never placed is the zero State.
func (s *Saga) loadOrder(ctx context.Context, orderID string) (order.State, error) {
	stream, err := s.orders.StreamID(orderID)
	if err != nil {
		return order.State{}, fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	state := order.Decider.Initial()
	for rec, err := range s.cfg.Store.ReadStream(ctx, stream, 1) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return order.State{}, fmt.Errorf("saga: load order %q: %w", orderID, err)
		}
		v, err := s.cfg.Registry.Decode(rec)
		if err != nil {
			return order.State{}, fmt.Errorf("saga: load order %q: %w", orderID, err)
		}
		if e, ok := v.(order.Event); ok {
			state = order.Evolve(state, e)
		}
	}
	return state, nil
}

// truncate shortens s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
