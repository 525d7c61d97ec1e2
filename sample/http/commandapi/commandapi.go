package commandapi

import (
	"context"
	"encoding/json"

	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// Header names the API reads.
const (
	// HeaderIdempotencyKey makes a command safe to retry.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderCorrelationID names the correlation id of the command's events.
	HeaderCorrelationID = "X-Correlation-ID"
	// HeaderIdempotencyRecorded answers every successful request that carried
	// an Idempotency-Key: "true" when the key is recorded with the events the
	// command wrote, so that every retry gets this answer; "false" when the
	// command changed nothing, wrote nothing and so recorded nothing: a retry
	// is decided again on the entity as it is then.
	HeaderIdempotencyRecorded = "Idempotency-Recorded"
)

// MaxIdempotencyKeyLen is the longest Idempotency-Key or X-Correlation-ID,
// in bytes.
const MaxIdempotencyKeyLen = 128

// idSpace is the UUIDv5 namespace of ids derived from idempotency keys. It is
// itself derived from the project URL, so that it is reproducible. The URL
// is the package's path when the namespace was chosen; it stays as it is
// after the package moved, or a retry across an upgrade would name another
// entity.
var idSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/eventline/eventline/sample/commandapi"))

// Config configures an API. Every field has a usable zero value.
type Config struct {
	// Logger receives one line per request answered with a 5xx. nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the API's request metrics
	// (eventline_http_requests_total and
	// eventline_http_request_duration_seconds, labelled api="command") and,
	// unless Handler names another, the command handlers' metrics
	// (eventline_command_*).
	Registerer prometheus.Registerer
	// NewID returns a fresh entity id for carts, customers and orders created
	// without an Idempotency-Key. It must return valid command entity ids.
	// nil means a random time-ordered UUID (v7).
	NewID func() string
	// Handler is the base configuration of the command handlers (retries,
	// back-off); its Name is set per entity kind. Its Logger defaults to
	// Config.Logger.
	Handler command.Config
}

// API serves the sample's commands. It is safe for concurrent use and holds
// nothing that needs closing; the store belongs to the caller.
type API struct {
	carts     *command.Handler[cart.State, cart.Command, cart.Event]
	customers *command.Handler[customer.State, customer.Command, customer.Event]
	log       *slog.Logger
	newID     func() string
	errors    []httpjson.Mapping
	metrics   *httpjson.Metrics
}

// New returns an API that keeps carts and customers in store, whose events
// must be registered in reg (cart.RegisterEvents, customer.RegisterEvents).
func New(store eventstore.Store, reg *eventstore.Registry, cfg Config) (*API, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewID == nil {
		cfg.NewID = newRandomID
	}
	hc := cfg.Handler
	if hc.Logger == nil {
		hc.Logger = cfg.Logger
	}
	if hc.Registerer == nil {
		hc.Registerer = cfg.Registerer
	}
	hc.Name = "cart"
	carts, err := command.NewHandler(store, reg, cart.Decider, hc)
	if err != nil {
		return nil, fmt.Errorf("commandapi: %w", err)
	}
	hc.Name = "customer"
	customers, err := command.NewHandler(store, reg, customer.Decider, hc)
	if err != nil {
		return nil, fmt.Errorf("commandapi: %w", err)
	}
	a := &API{
		carts:     carts,
		customers: customers,
		log:       cfg.Logger,
		newID:     cfg.NewID,
		// A client that went away cannot read any status; 503 keeps such
		// requests out of the 500s that mean a bug.
		errors: append(ErrorMappings(),
			httpjson.Mapping{Target: context.Canceled, Status: http.StatusServiceUnavailable, Code: httpjson.CodeUnavailable}),
	}
	if a.metrics, err = httpjson.NewMetrics("command", cfg.Registerer); err != nil {
		return nil, fmt.Errorf("commandapi: %w", err)
	}
	return a, nil
}

func newRandomID() string {
	if id, err := uuid.NewV7(); err == nil {
		return id.String()
	}
	return uuid.NewString()
}

// Mount registers the command endpoints on mux.
func (a *API) Mount(mux *http.ServeMux) {
	routes := []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request) error
	}{
		{"POST /carts", a.openCart},
		{"POST /carts/{id}/items", a.addItem},
		{"PUT /carts/{id}/items/{product_id}", a.changeQuantity},
		{"DELETE /carts/{id}/items/{product_id}", a.removeItem},
		{"POST /carts/{id}/checkout", a.checkOut},
		{"POST /customers", a.registerCustomer},
	}
	for _, r := range routes {
		mux.Handle(r.pattern, a.endpoint(r.pattern, r.h))
	}
}

// Handler returns a handler of only the command endpoints; unknown routes
// and wrong methods get the JSON error body (httpjson.Mux).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Mount(mux)
	return httpjson.Mux(mux)
}

// endpoint adapts a handler that returns its error, writes that error, and
// counts the request.
func (a *API) endpoint(route string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return a.metrics.Route(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			e := httpjson.Classify(clientError(err), a.errors)
			// A client that went away is not a server failure worth an error log.
			if e.Status >= 500 && r.Context().Err() == nil {
				a.log.ErrorContext(r.Context(), "command failed", "method", r.Method, "path", r.URL.Path,
					"status", e.Status, "error", err)
			}
			httpjson.Write(w, e)
		}
	}))
}

// Response bodies.
type (
	// OpenCartResponse is the body of a 201 from POST /carts.
	OpenCartResponse struct {
		CartID   string `json:"cart_id"`
		Position string `json:"position"`
	}
	// PositionResponse is the body of a 200 from the item endpoints.
	PositionResponse struct {
		Position string `json:"position"`
	}
	// CheckOutResponse is the body of a 200 from POST /carts/{id}/checkout.
	CheckOutResponse struct {
		OrderID  string `json:"order_id"`
		Position string `json:"position"`
	}
	// RegisterCustomerResponse is the body of a 201 from POST /customers.
	RegisterCustomerResponse struct {
		CustomerID string `json:"customer_id"`
		Position   string `json:"position"`
	}
)

func (a *API) openCart(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeOpenCart(w, r)
	if err != nil {
		return err
	}
	id := req.CartID
	if id == "" {
		id = a.chooseID(key, "cart")
	}
	// A cart is opened once: its stream is nearly always new, and HandleNew
	// skips reading it (a stream that exists is read after all).
	res, err := a.carts.HandleNew(ctx, id, req.Command())
	if err != nil {
		return err
	}
	setRecorded(w, key, len(res.Events) > 0)
	return writeJSON(w, http.StatusCreated, OpenCartResponse{CartID: id, Position: res.Position.String()})
}

func (a *API) addItem(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeAddItem(w, r)
	if err != nil {
		return err
	}
	return a.handleCart(ctx, w, key, r.PathValue("id"), req.Command())
}

func (a *API) changeQuantity(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	product, err := productID(r)
	if err != nil {
		return err
	}
	req, err := DecodeChangeQuantity(w, r)
	if err != nil {
		return err
	}
	return a.handleCart(ctx, w, key, r.PathValue("id"), req.Command(product))
}

func (a *API) removeItem(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	product, err := productID(r)
	if err != nil {
		return err
	}
	return a.handleCart(ctx, w, key, r.PathValue("id"), cart.RemoveItem{ProductID: product})
}

func (a *API) handleCart(ctx context.Context, w http.ResponseWriter, key, id string, cmd cart.Command) error {
	res, err := a.carts.Handle(ctx, id, cmd)
	if err != nil {
		return err
	}
	setRecorded(w, key, len(res.Events) > 0)
	return writeJSON(w, http.StatusOK, PositionResponse{Position: res.Position.String()})
}

// setRecorded tells the client of a keyed request whether its key was
// recorded. A keyed command is recorded by its events (command.WithID): one
// that decided none wrote nothing, so no replica can know it was answered.
// Recording it would take an event of its own in the entity's stream, which
// every reader of the stream would have to skip; the API says so instead.
func setRecorded(w http.ResponseWriter, key string, wrote bool) {
	if key != "" {
		w.Header().Set(HeaderIdempotencyRecorded, strconv.FormatBool(wrote))
	}
}

// checkOut takes no body: the cart's content is the order. Any body sent is
// ignored.
func (a *API) checkOut(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := command.ValidateID(id); err != nil {
		return err
	}
	// With a key, the order id is derived from cart and key: a retry sends the
	// identical command, which the handler recognises as already handled.
	orderID := a.chooseID(key, "order\x00"+id)
	res, err := a.carts.Handle(ctx, id, cart.CheckOut{OrderID: orderID})
	if err != nil {
		return err
	}
	setRecorded(w, key, len(res.Events) > 0)
	for _, e := range res.Events {
		if c, ok := e.(cart.CheckedOut); ok {
			orderID = c.OrderID
		}
	}
	return writeJSON(w, http.StatusOK, CheckOutResponse{OrderID: orderID, Position: res.Position.String()})
}

func (a *API) registerCustomer(w http.ResponseWriter, r *http.Request) error {
	ctx, key, err := commandContext(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeRegisterCustomer(w, r)
	if err != nil {
		return err
	}
	id := req.CustomerID
	if id == "" {
		id = a.chooseID(key, "customer")
	}
	res, err := a.customers.HandleNew(ctx, id, req.Command())
	if err != nil {
		return err
	}
	setRecorded(w, key, len(res.Events) > 0)
	return writeJSON(w, http.StatusCreated, RegisterCustomerResponse{CustomerID: id, Position: res.Position.String()})
}

// chooseID returns a new entity id: derived from the idempotency key and
// scope when there is a key, so that a retry names the same entity, else
// fresh.
func (a *API) chooseID(key, scope string) string {
	if key == "" {
		return a.newID()
	}
	return uuid.NewSHA1(idSpace, []byte(scope+"\x00"+key)).String()
}

// commandContext reads the Idempotency-Key and X-Correlation-ID headers into
// the request's context.
func commandContext(w http.ResponseWriter, r *http.Request) (context.Context, string, error) {
	ctx := r.Context()
	key, err := singleHeader(r, HeaderIdempotencyKey)
	if err != nil {
		return nil, "", err
	}
	if key != "" {
		ctx = command.WithID(ctx, key)
	}
	cid, err := singleHeader(r, HeaderCorrelationID)
	if err != nil {
		return nil, "", err
	}
	if cid != "" {
		ctx = command.WithMetadata(ctx, eventstore.Metadata{CorrelationID: cid})
		w.Header().Set(HeaderCorrelationID, cid)
	}
	return ctx, key, nil
}

// singleHeader returns header name's value: "" when absent, a 400 when it is
// repeated, empty, too long or not printable UTF-8.
func singleHeader(r *http.Request, name string) (string, error) {
	vs := r.Header.Values(name)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", badRequest(fmt.Sprintf("header %s is given %d times; send it once", name, len(vs)))
	}
	v := vs[0]
	switch {
	case v == "":
		return "", badRequest(fmt.Sprintf("header %s is empty; omit it or send 1 to %d printable characters", name, MaxIdempotencyKeyLen))
	case len(v) > MaxIdempotencyKeyLen:
		return "", badRequest(fmt.Sprintf("header %s is %d bytes, at most %d", name, len(v), MaxIdempotencyKeyLen))
	case !utf8.ValidString(v):
		return "", badRequest(fmt.Sprintf("header %s is not valid UTF-8", name))
	}
	for _, c := range v {
		if !unicode.IsPrint(c) {
			return "", badRequest(fmt.Sprintf("header %s holds the non-printable character %U", name, c))
		}
	}
	return v, nil
}

// productID returns the URL's product id, or a 400: the URL names no item
// any cart could hold.
func productID(r *http.Request) (string, error) {
	p := r.PathValue("product_id")
	if err := cart.ValidateProductID(p); err != nil {
		return "", &httpjson.Error{Status: http.StatusBadRequest, Code: httpjson.CodeMalformed, Message: err.Error(), Err: err}
	}
	return p, nil
}

func badRequest(msg string) error {
	return httpjson.NewError(http.StatusBadRequest, httpjson.CodeMalformed, msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("commandapi: encode response: %w", err)
	}
	httpjson.WriteBody(w, status, body, false)
	return nil
}
