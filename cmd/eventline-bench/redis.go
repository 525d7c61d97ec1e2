package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/eventline/eventline/internal/freeport"
	"github.com/redis/go-redis/v9"
)

// redisServer is a private redis-server process started for one run.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// startRedis starts redis-server on a free loopback port, with persistence
// off, in dir. The caller must call stop.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("no redis-server on PATH (pass --redis-url): %w", err)
	}
	var lastErr error
	// A free port can be taken by someone else before redis binds it; a few
	// attempts cover that race.
	for range 5 {
		port, err := freeport.Loopback()
		if err != nil {
			return nil, err
		}
		s, err := launchRedis(ctx, bin, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func launchRedis(ctx context.Context, bin, dir string, port int) (*redisServer, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log",
		"--protected-mode", "no")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &redisServer{Addr: addr, cmd: cmd, done: make(chan struct{}), dir: dir}
	go func() { _ = cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server on %s exited: %s", addr, log)
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING: %w", addr, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop kills the server and waits for it to exit.
func (s *redisServer) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	<-s.done
}
