package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// EnvTracesExporter chooses where the process's OpenTelemetry spans go, as in
// the OpenTelemetry SDK's environment specification.
const EnvTracesExporter = "OTEL_TRACES_EXPORTER"

// The values of Config.TracesExporter.
const (
	// TracesOTLP sends spans by OTLP over HTTP (protobuf), configured by the
	// standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout,
	// TLS): for production, to a collector.
	TracesOTLP = "otlp"
	// TracesConsole writes spans to standard output as JSON: for development.
	TracesConsole = "console"
	// TracesNone (or empty) turns tracing off: no spans, no trace context
	// in the events, nothing spent.
	TracesNone = "none"
)

// tracingShutdownTimeout bounds the flush of the spans still buffered when
// the process stops.
const tracingShutdownTimeout = 5 * time.Second

func validTracesExporter(v string) error {
	switch v {
	case "", TracesNone, TracesOTLP, TracesConsole:
		return nil
	}
	return &SettingError{Env: EnvTracesExporter, Flag: "traces-exporter",
		Reason: fmt.Sprintf("%q is not one of otlp, console, none", v)}
}

// tracerProvider returns the process's TracerProvider, or nil when tracing is
// off, and the func that flushes and stops it. Config.TracerProvider is used
// as it is (and not stopped). Otherwise Config.TracesExporter picks the
// exporter; the resource comes from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, with service.name "cart" and the role as
// defaults.
func tracerProvider(ctx context.Context, role Role, cfg Config, stdout io.Writer, log *slog.Logger) (trace.TracerProvider, func(), error) {
	if cfg.TracerProvider != nil {
		return cfg.TracerProvider, func() {}, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	switch cfg.TracesExporter {
	case "", TracesNone:
		return nil, func() {}, nil
	case TracesOTLP:
		// Reads OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
		// _HEADERS, _TIMEOUT, _COMPRESSION and the TLS settings itself.
		exp, err = otlptracehttp.New(ctx)
	case TracesConsole:
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	default:
		return nil, nil, validTracesExporter(cfg.TracesExporter)
	}
	if err != nil {
		return nil, nil, &SettingError{Env: EnvTracesExporter, Flag: "traces-exporter", Reason: "cannot start the exporter", Err: err}
	}
	attrs := []attribute.KeyValue{attribute.String("eventline.role", string(role))}
	if os.Getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(os.Getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		attrs = append(attrs, attribute.String("service.name", "cart"))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: keep what parsed.
		log.Warn("tracing: resource attributes", "error", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing on", "exporter", cfg.TracesExporter)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing: flushing the last spans", "error", err)
		}
	}, nil
}

// traced wraps the process's HTTP handler in a server span per request
// (otelhttp), child of the request's W3C traceparent header if any, named
// after the route pattern ("POST /carts/{id}/checkout"). A nil tp returns h.
func traced(h http.Handler, role Role, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, "cart "+string(role),
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return r.Method
		}))
}
