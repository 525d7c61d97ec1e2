package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
)

// spanTree is what the in-memory exporter holds, indexed.
type spanTree struct {
	t     *testing.T
	spans []tracetest.SpanStub
}

// named returns the spans called name in trace tid.
func (s spanTree) named(tid trace.TraceID, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range s.spans {
		if sp.Name == name && sp.SpanContext.TraceID() == tid {
			out = append(out, sp)
		}
	}
	return out
}

// child returns the one span called name whose parent is parent, failing the
// test unless there is exactly one, made by role's TracerProvider.
func (s spanTree) child(parent tracetest.SpanStub, name string, role Role) tracetest.SpanStub {
	s.t.Helper()
	var found []tracetest.SpanStub
	for _, sp := range s.named(parent.SpanContext.TraceID(), name) {
		if sp.Parent.SpanID() == parent.SpanContext.SpanID() {
			found = append(found, sp)
		}
	}
	if len(found) != 1 {
		s.t.Fatalf("%d spans %q under %q, want 1; the trace holds %v", len(found), name, parent.Name, s.names(parent.SpanContext.TraceID()))
	}
	if got := roleOf(found[0]); got != string(role) {
		s.t.Errorf("span %q was made by the %s role's provider, want %s", name, got, role)
	}
	return found[0]
}

func (s spanTree) names(tid trace.TraceID) []string {
	var out []string
	for _, sp := range s.spans {
		if sp.SpanContext.TraceID() == tid {
			out = append(out, sp.Name+" ("+roleOf(sp)+")")
		}
	}
	return out
}

func roleOf(sp tracetest.SpanStub) string {
	v, _ := sp.Resource.Set().Value("eventline.role")
	return v.String()
}

// TestOneCheckoutIsOneTrace runs the split roles (command-api, projector,
// saga) in one test process, each with its own TracerProvider, all exporting
// to one in-memory exporter. The roles share no Go context: the trace context
// crosses the event store (the events' traceparent header) and the broker
// (Redis Streams, the message's traceparent). A checkout sent under a
// client's span must come out as one trace: the HTTP request, the command
// and its append, the relay's publish, the saga's steps and their commands,
// the order's final state.
func TestOneCheckoutIsOneTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	provider := func(role Role) trace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("eventline.role", string(role)))))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}
	base := Config{StoreURL: filepath.Join(t.TempDir(), "events.db"), RedisURL: redistest.Start(t).URL}
	role := func(r Role) Config {
		c := base
		c.TracerProvider = provider(r)
		return c
	}
	cmdURL, _ := startRole(t, RoleCommandAPI, role(RoleCommandAPI))
	startRole(t, RoleProjector, role(RoleProjector))
	startRole(t, RoleSaga, role(RoleSaga))

	s := &server{t: t, url: cmdURL}
	s.must("POST", "/customers", `{"customer_id":"ann","credit_limit_cents":5000}`, 201, nil)
	s.must("POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, 201, nil)
	s.must("POST", "/carts/c1/items", `{"product_id":"book","quantity":2,"unit_price_cents":1299}`, 200, nil)

	client := provider("client")
	ctx, root := client.Tracer("test").Start(context.Background(), "client checkout")
	headers := http.Header{}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(headers))
	var co checkout
	s.must("POST", "/carts/c1/checkout", "", 200, &co, "traceparent", headers.Get("traceparent"))
	root.End()
	tid := root.SpanContext().TraceID()

	tree := spanTree{t: t}
	deadline := time.Now().Add(30 * time.Second)
	for {
		tree.spans = exp.GetSpans()
		if len(tree.named(tid, "order confirmed")) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span \"order confirmed\" in the checkout's trace within 30s; it holds %v", tree.names(tid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rootStub tracetest.SpanStub
	for _, sp := range tree.spans {
		if sp.SpanContext.SpanID() == root.SpanContext().SpanID() {
			rootStub = sp
		}
	}

	// The command side: the request continues the client's trace.
	httpSpan := tree.child(rootStub, "POST /carts/{id}/checkout", RoleCommandAPI)
	if httpSpan.SpanKind != trace.SpanKindServer {
		t.Errorf("HTTP span kind %s, want server", httpSpan.SpanKind)
	}
	checkOut := tree.child(httpSpan, "handle cart", RoleCommandAPI)
	tree.child(checkOut, "append cart", RoleCommandAPI)

	// Across the store to the relay, across the broker to the saga.
	topic := "publish " + relay.DefaultTopic
	published := tree.child(checkOut, topic, RoleSaga)
	if published.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span kind %s, want producer", published.SpanKind)
	}
	onCheckedOut := tree.child(published, "process cart.checked_out", RoleSaga)
	tree.child(onCheckedOut, "handle order", RoleSaga) // place
	reserve := tree.child(onCheckedOut, "handle customer", RoleSaga)
	tree.child(reserve, "append customer", RoleSaga)

	// The credit reserved, written by the saga, comes back round the loop.
	onReserved := tree.child(tree.child(reserve, topic, RoleSaga), "process customer.credit_reserved", RoleSaga)
	tree.child(tree.child(onReserved, "handle order", RoleSaga), "append order", RoleSaga) // confirm
	final := tree.child(onReserved, "order confirmed", RoleSaga)
	if v, _ := attrOf(final, "eventline.order.id"); v != co.OrderID {
		t.Errorf("final state span names order %q, want %q", v, co.OrderID)
	}

	// The projector's batches that made the checkout and the confirmation
	// visible are traces of their own, linked to the commands' spans.
	for _, cmd := range []tracetest.SpanStub{checkOut, tree.child(onReserved, "handle order", RoleSaga)} {
		var batches []string
		waitFor(t, "a projection batch linked to "+cmd.Name, func() bool {
			tree.spans = exp.GetSpans()
			batches = linkedBatches(tree.spans, cmd.SpanContext)
			return len(batches) > 0
		})
		for _, sp := range tree.spans {
			if sp.SpanContext.TraceID() == tid && strings.HasPrefix(sp.Name, "projection ") {
				t.Errorf("batch span %q is in the checkout's trace; it must be a trace of its own, linked", sp.Name)
			}
		}
		t.Logf("%s is linked from %v", cmd.Name, batches)
	}
}

// linkedBatches names the projector's batch spans linked to sc.
func linkedBatches(spans []tracetest.SpanStub, sc trace.SpanContext) []string {
	var out []string
	for _, sp := range spans {
		if !strings.HasPrefix(sp.Name, "projection ") || roleOf(sp) != string(RoleProjector) {
			continue
		}
		for _, l := range sp.Links {
			if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
				out = append(out, sp.Name)
			}
		}
	}
	return out
}

func attrOf(sp tracetest.SpanStub, key string) (string, bool) {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String(), true
		}
	}
	return "", false
}

// TestTracesExporterSetting: the sample takes otlp, console and none (or
// nothing) for OTEL_TRACES_EXPORTER and refuses anything else, naming the
// variable.
func TestTracesExporterSetting(t *testing.T) {
	for _, v := range []string{"", TracesNone, TracesOTLP, TracesConsole} {
		if err := validTracesExporter(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	err := validTracesExporter("jaeger")
	if err == nil || !strings.Contains(err.Error(), EnvTracesExporter) {
		t.Fatalf("jaeger: error %v, want one naming %s", err, EnvTracesExporter)
	}
}

// TestTracesExporters: console writes the spans to the process's stdout as
// JSON; otlp posts them by OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT
// (here a test server standing in for a collector); none gives no provider.
func TestTracesExporters(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	span := func(tp trace.TracerProvider, stop func()) {
		_, s := tp.Tracer("test").Start(context.Background(), "a span")
		s.End()
		stop() // flushes
	}

	var out bytes.Buffer
	tp, stop, err := tracerProvider(context.Background(), RoleServe, Config{TracesExporter: TracesConsole}, &out, log)
	if err != nil {
		t.Fatal(err)
	}
	span(tp, stop)
	if !strings.Contains(out.String(), `"Name":"a span"`) || !strings.Contains(out.String(), `"eventline.role"`) {
		t.Errorf("console exporter wrote %q, want the span as JSON with the role", out.String())
	}

	got := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + strconv.FormatBool(bytes.Contains(body, []byte("a span")))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tp, stop, err = tracerProvider(context.Background(), RoleServe, Config{TracesExporter: TracesOTLP}, io.Discard, log)
	if err != nil {
		t.Fatal(err)
	}
	span(tp, stop)
	select {
	case req := <-got:
		if req != "POST /v1/traces application/x-protobuf true" {
			t.Errorf("the collector got %q, want the span POSTed to /v1/traces as protobuf", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OTLP request reached the collector")
	}

	if tp, _, err := tracerProvider(context.Background(), RoleServe, Config{TracesExporter: TracesNone}, io.Discard, log); tp != nil || err != nil {
		t.Errorf("none: provider %v, error %v; want neither", tp, err)
	}
}
