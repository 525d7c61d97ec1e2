package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one OS process of the topology: a role of the cart binary or the
// redis-server. It keeps its address across restarts, so that clients and
// proxies need not be told.
type proc struct {
	name string   // e.g. "command-api-1"
	bin  string   // executable
	args []string // arguments
	env  []string // added to the environment
	addr string   // host:port it listens on
	log  string   // file that receives its stdout and stderr
	// ready reports whether a start succeeded; nil means waiting for the
	// "listening on" line of a cart role.
	ready func(ctx context.Context) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start launches the process and waits until it is ready (bounded by
// timeout). A port still held by the killed predecessor is retried.
func (p *proc) start(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = p.launch(time.Until(deadline)); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("chaos: start %s: %w", p.name, last)
}

func (p *proc) launch(timeout time.Duration) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "--- chaos: starting %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stderr = f
	// Its own process group: a pause or kill reaches the process only,
	// and a signal to the chaos tool's terminal does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	listening := make(chan struct{}, 1)
	logf, _ := os.OpenFile(p.log, os.O_WRONLY|os.O_APPEND, 0o644)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if logf != nil {
				fmt.Fprintln(logf, sc.Text())
			}
			if strings.Contains(sc.Text(), " listening on ") {
				select {
				case listening <- struct{}{}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		if logf != nil {
			_ = logf.Close()
		}
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done, p.paused = cmd, done, false
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ready error
	if p.ready != nil {
		ready = p.ready(ctx)
	} else {
		select {
		case <-listening:
		case <-done:
			ready = fmt.Errorf("exited before listening (see %s)", p.log)
		case <-ctx.Done():
			ready = fmt.Errorf("did not print its URL within %s (see %s)", timeout, p.log)
		}
	}
	if ready != nil {
		p.kill()
		return ready
	}
	return nil
}

// signal sends sig to the running process, if any.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
		switch sig {
		case syscall.SIGSTOP:
			p.paused = true
		case syscall.SIGCONT:
			p.paused = false
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop asks the process to end (SIGTERM, resuming it first if paused) and
// kills it after grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done, paused := p.cmd, p.done, p.paused
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// newRedisProc is a redis-server on addr, in dir. Without persistence a
// restart brings it back empty; with it, every write is in the append-only
// file (fsync always) before it is acknowledged, so a SIGKILL loses nothing.
func newRedisProc(name, bin, dir, addr string, persistent bool) *proc {
	_, port, _ := net.SplitHostPort(addr)
	aof := []string{"--appendonly", "no"}
	if persistent {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	p := &proc{
		name: name,
		bin:  bin,
		args: append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", dir, "--save", "",
			"--daemonize", "no", "--protected-mode", "no", "--maxmemory-policy", "noeviction"}, aof...),
		addr: addr,
		log:  filepath.Join(dir, name+".log"),
	}
	p.ready = func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer c.Close()
		for {
			if err := c.Ping(ctx).Err(); err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("redis-server on %s did not answer PING", addr)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return p
}
