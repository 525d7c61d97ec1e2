package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotReady means a projection has no active version yet: its first
	// version has not caught up with the log, so there is no model to read.
	ErrNotReady = errors.New("query: projection not ready")
	// ErrNotFound means a read model entry does not exist.
	ErrNotFound = errors.New("query: not found")
	// ErrInvalidName means a projection name is empty, too long or uses
	// characters outside [a-z0-9_-].
	ErrInvalidName = errors.New("query: invalid projection name")
)

// View is one build of a projection's read model, as resolved at one moment.
// Keep a View for the reads of one request: all of them then see the same
// build even if a rebuild switches the active build meanwhile.
type View struct {
	rdb redis.Cmdable
	// Name is the projection's name.
	Name string
	// Version is the schema version the View reads, and Generation the
	// generation of that version (0 unless the version was force-rebuilt).
	Version    int
	Generation int
}

// Resolve returns a View of the active version of projection name. A
// projection without an active version gives an error matching ErrNotReady.
// Resolve never waits.
func Resolve(ctx context.Context, rdb redis.Cmdable, name string) (*View, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	s, err := rdb.Get(ctx, ActiveKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: projection %q has no active version", ErrNotReady, name)
	}
	if err != nil {
		return nil, fmt.Errorf("query: resolve projection %q: %w", name, err)
	}
	b, err := ParseBuild(s)
	if err != nil {
		return nil, fmt.Errorf("query: projection %q: active build: %w", name, err)
	}
	return &View{rdb: rdb, Name: name, Version: b.Version, Generation: b.Generation}, nil
}

// Build returns the build the View reads.
func (v *View) Build() Build { return Build{Version: v.Version, Generation: v.Generation} }

// Key returns the key of a read model entry of the View's build.
func (v *View) Key(parts ...string) string { return Key(v.Name, v.Build(), parts...) }

// Checkpoint returns the position of the last record applied to the View's
// build (Start when none).
func (v *View) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	return ReadCheckpoint(ctx, v.rdb, v.Name, v.Build())
}

// GetJSON reads the string key made of parts and decodes it as JSON into dst.
// A missing key gives an error matching ErrNotFound.
func (v *View) GetJSON(ctx context.Context, dst any, parts ...string) error {
	key := v.Key(parts...)
	b, err := v.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return fmt.Errorf("query: GET %s: %w", key, err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("query: decode %s: %w", key, err)
	}
	return nil
}

// HGetAll reads the hash key made of parts into dst, a pointer to a struct
// whose fields carry `redis:"field"` tags (go-redis' Scan rules). A missing
// key gives an error matching ErrNotFound.
func (v *View) HGetAll(ctx context.Context, dst any, parts ...string) error {
	key := v.Key(parts...)
	res := v.rdb.HGetAll(ctx, key)
	if err := res.Err(); err != nil {
		return fmt.Errorf("query: HGETALL %s: %w", key, err)
	}
	if len(res.Val()) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err := res.Scan(dst); err != nil {
		return fmt.Errorf("query: decode %s: %w", key, err)
	}
	return nil
}

// ReadCheckpoint returns the checkpoint of build b of a projection, Start
// when the build has applied nothing. View.Checkpoint reads the checkpoint of
// the build the View resolved.
func ReadCheckpoint(ctx context.Context, rdb redis.Cmdable, name string, b Build) (eventstore.Position, error) {
	key := CheckpointKey(name, b)
	s, err := rdb.HGet(ctx, key, FieldPosition).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("query: read checkpoint %s: %w", key, err)
	}
	return eventstore.ParsePosition(s)
}

// Polling bounds of WaitFor. The first re-check comes quickly because a
// runner usually commits within a few milliseconds; the cap bounds the load
// many waiters put on Redis.
const (
	waitMinBackoff = 500 * time.Microsecond
	waitMaxBackoff = 20 * time.Millisecond
)

// WaitFor returns a View of the active build of projection name once that
// build's checkpoint has reached position, so that a client reading through
// it sees its own writes: pass the position a command returned. A projection
// with no active build yet (its first build is still catching up) is waited
// for like a checkpoint behind position: WaitFor returns once a build is
// active and has reached position. It re-checks with a growing pause (0.5
// ms up to 20 ms), re-resolving the active build each time, and gives up
// with ctx's error; if no build was active by then the error also matches
// ErrNotReady.
//
// A zero position never waits: WaitFor is then Resolve, and a projection
// with no active build gives ErrNotReady at once.
func WaitFor(ctx context.Context, rdb redis.Cmdable, name string, position eventstore.Position) (*View, error) {
	pause := waitMinBackoff
	var timer *time.Timer
	var last *View // the View of the last look, nil while no build is active
	var cp eventstore.Position
	for {
		v, err := Resolve(ctx, rdb, name)
		if position.IsZero() {
			return v, err
		}
		if err == nil {
			cp, err = v.Checkpoint(ctx)
		}
		switch {
		case err == nil && !cp.Before(position):
			return v, nil
		case err == nil, errors.Is(err, ErrNotReady):
			last = v
		case ctx.Err() != nil: // the deadline struck during the look
			return nil, waitError(name, position, last, cp, ctx.Err())
		default:
			return nil, err
		}
		if timer == nil {
			timer = time.NewTimer(pause)
			defer timer.Stop()
		} else {
			timer.Reset(pause)
		}
		select {
		case <-ctx.Done():
			return nil, waitError(name, position, last, cp, ctx.Err())
		case <-timer.C:
		}
		pause = min(2*pause, waitMaxBackoff)
	}
}

// waitError is the error of a wait that ctx ended: with v nil no build was
// active, and the error matches ErrNotReady too.
func waitError(name string, position eventstore.Position, v *View, cp eventstore.Position, err error) error {
	if v == nil {
		return fmt.Errorf("query: wait for projection %q to reach %s: %w: no active build yet: %w", name, position, ErrNotReady, err)
	}
	return fmt.Errorf("query: wait for projection %q to reach %s (at %s): %w", name, position, cp, err)
}
