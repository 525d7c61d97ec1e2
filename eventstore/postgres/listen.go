package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// startListener starts, once, the goroutine that LISTENs for commits of
// other processes on a connection of its own. Close stops it.
func (s *Store) startListener() {
	s.listenOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.listenStop = cancel
		s.listenStopped = make(chan struct{})
		go s.listen(ctx)
	})
}

// listen keeps a connection LISTENing on the schema's channel and wakes the
// subscriptions on every notification. When the connection breaks it
// reconnects with back-off; after every (re)connection it wakes the
// subscriptions too, since notifications sent meanwhile were lost.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenStopped)
	wait := time.Duration(0)
	failing := false
	for {
		err := s.listenConn(ctx, func() {
			wait = 0
			if failing {
				s.cfg.Logger.Info("postgres event store: listening again", "channel", s.channel)
				failing = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !failing {
			s.cfg.Logger.Warn("postgres event store: listening connection lost; reconnecting",
				"channel", s.channel, "error", err)
			failing = true
		}
		wait = min(max(2*wait, 10*time.Millisecond), maxRetryWait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listenConn connects, LISTENs and waits for notifications until the
// connection fails or ctx ends. connected runs once LISTEN succeeded.
func (s *Store) listenConn(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+s.channel); err != nil {
		return err
	}
	connected()
	s.wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.wake()
	}
}
