package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// Service is the HTTP API: commands go to the handler, queries read Redis.
type Service struct {
	Stock *command.Handler[Item, Command, Event]
	Redis redis.UniversalClient
	// MaxWait bounds how long a query with ?after= waits for the read model.
	MaxWait time.Duration
}

// Routes returns the API's handler.
func (s *Service) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /items/{sku}/receive", s.command(func(n int) Command { return Receive{Quantity: n} }))
	mux.HandleFunc("POST /items/{sku}/ship", s.command(func(n int) Command { return Ship{Quantity: n} }))
	mux.HandleFunc("GET /items/{sku}", s.level)
	return mux
}

// command handles {"quantity": n} and answers the position of the write.
func (s *Service) command(newCommand func(quantity int) Command) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Quantity int `json:"quantity"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "the body must be {\"quantity\": n}")
			return
		}
		res, err := s.Stock.Handle(r.Context(), r.PathValue("sku"), newCommand(body.Quantity))
		var rejected *command.RejectedError
		switch {
		case errors.As(err, &rejected):
			// A domain refusal: tell the client the rule, not the stream.
			writeError(w, http.StatusConflict, rejected.Err.Error())
		case errors.Is(err, command.ErrInvalidID):
			writeError(w, http.StatusBadRequest, "invalid item id")
		case err != nil:
			slog.ErrorContext(r.Context(), "command failed", "error", err)
			writeError(w, http.StatusInternalServerError, "internal error")
		default:
			writeJSON(w, http.StatusOK, map[string]eventstore.Position{"position": res.Position})
		}
	}
}

// level answers one item's Level. With ?after=<position> it first waits until
// the read model has applied that position: the client reads its own write.
func (s *Service) level(w http.ResponseWriter, r *http.Request) {
	after, err := eventstore.ParsePosition(r.URL.Query().Get("after"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "after must be a position a command returned")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.MaxWait)
	defer cancel()
	view, err := query.WaitFor(ctx, s.Redis, LevelsName, after)
	switch {
	case errors.Is(err, query.ErrNotReady):
		writeError(w, http.StatusServiceUnavailable, "the read model is being built")
		return
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "the read model has not reached that position yet")
		return
	case err != nil:
		slog.ErrorContext(r.Context(), "query failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	var l Level
	err = view.HGetAll(r.Context(), &l, "item", r.PathValue("sku"))
	switch {
	case errors.Is(err, query.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such item")
	case err != nil:
		slog.ErrorContext(r.Context(), "query failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	default:
		writeJSON(w, http.StatusOK, l)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
