// Package redisbreaker puts a breaker.Breaker around a go-redis client as a
// hook: every command and pipeline of the client goes through the breaker,
// so whatever uses the client (read models, checkpoints, leases, Streams)
// fails fast while Redis is down.
//
//	b, _ := breaker.New(breaker.Config{Name: "redis"})
//	rdb.AddHook(redisbreaker.Hook(b))
package redisbreaker

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/breaker"
)

// Hook returns a go-redis hook that calls through b. Replies that show a
// working server (IsAnswer) count as successes.
func Hook(b *breaker.Breaker) redis.Hook { return hook{b} }

type hook struct{ b *breaker.Breaker }

// inside marks the context of a call already going through the breaker: the
// commands go-redis sends on its own within it (HELLO and CLIENT SETINFO on
// a new connection) are part of that call, not calls of their own, which a
// half-open breaker would refuse while their own call is its probe.
type inside struct{}

func (h hook) DialHook(next redis.DialHook) redis.DialHook {
	// Dials pass: the command that needed the connection counts, once. And
	// go-redis probes a server it could not reach with dials of its own
	// (one a second, outside any command); refusing those while the breaker
	// is open would keep its pool from ever trying again.
	return next
}

func (h hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(inside{}) != nil {
			return next(ctx, cmd)
		}
		ctx = context.WithValue(ctx, inside{}, true)
		done, err := h.b.Allow()
		if err != nil {
			cmd.SetErr(err)
			return err
		}
		err = next(ctx, cmd)
		done(health(err))
		return err
	}
}

func (h hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(inside{}) != nil {
			return next(ctx, cmds)
		}
		ctx = context.WithValue(ctx, inside{}, true)
		done, err := h.b.Allow()
		if err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err = next(ctx, cmds)
		done(health(err))
		return err
	}
}

// health is what the breaker is told about err: nil for an answer.
func health(err error) error {
	if IsAnswer(err) {
		return nil
	}
	return err
}

// IsAnswer reports whether err came from a Redis that works: a nil reply,
// an aborted transaction (a WATCHed key moved) or an error reply, except
// those a server sends while it cannot serve (LOADING, MASTERDOWN,
// CLUSTERDOWN, TRYAGAIN, BUSY).
func IsAnswer(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) {
		return true
	}
	if errors.Is(err, breaker.ErrOpen) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY"} {
		if redis.HasErrorPrefix(err, p) {
			return false
		}
	}
	return true
}
