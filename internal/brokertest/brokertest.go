// Package brokertest gives tests the message brokers of package relay/broker:
// the shared NATS JetStream and RabbitMQ servers, a private nats-server and a
// private RabbitMQ node (StartRabbit) a test may stop, kill and start again on
// their data, a loopback TCP proxy whose connections a test can cut, and
// fresh names so that runs never share a topic or a group.
//
// Which server a test gets:
//
//   - NATS: EVENTLINE_NATS_URL, else nats://127.0.0.1:4222.
//   - RabbitMQ: EVENTLINE_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/.
//
// A server that does not answer skips the test, or fails it when
// EVENTLINE_REQUIRE_NATS / EVENTLINE_REQUIRE_AMQP is set (as .ci/run does), so
// CI never silently tests nothing. StartNATS needs Debian's nats-server binary
// and StartRabbit Debian's rabbitmq-server package under the same rule.
package brokertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Environment variables naming the servers and making them required.
const (
	EnvNATSURL     = "EVENTLINE_NATS_URL"
	EnvAMQPURL     = "EVENTLINE_AMQP_URL"
	EnvRequireNATS = "EVENTLINE_REQUIRE_NATS"
	EnvRequireAMQP = "EVENTLINE_REQUIRE_AMQP"
)

// Name returns prefix followed by a random suffix: a topic, queue or group
// no other run uses.
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func unavailable(t testing.TB, require, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(require) != "" {
		t.Fatalf("brokertest: %s (and %s is set)", msg, require)
	}
	t.Skipf("brokertest: %s; skipping", msg)
}

func answers(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// NATSURL returns the URL of the shared NATS JetStream server.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvNATSURL)
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	if err := answers(u); err != nil {
		unavailable(t, EnvRequireNATS, "no NATS server at %s: %v", u, err)
	}
	return u
}

// AMQPURL returns the URL of the shared RabbitMQ server.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvAMQPURL)
	if u == "" {
		u = "amqp://guest:guest@127.0.0.1:5672/"
	}
	if err := answers(u); err != nil {
		unavailable(t, EnvRequireAMQP, "no RabbitMQ server at %s: %v", redact(u), err)
	}
	return u
}

func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(bad URL)"
	}
	return u.Redacted()
}

// NATS is a private nats-server with JetStream, in a temporary directory,
// stopped when the test ends.
type NATS struct {
	// Addr is host:port; URL the same as a nats:// URL.
	Addr, URL string

	t    testing.TB
	bin  string
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartNATS starts a private nats-server with JetStream on a free loopback
// port.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nats-server"); err2 != nil {
			unavailable(t, EnvRequireNATS, "no nats-server binary: %v", err)
		}
		bin = "/usr/sbin/nats-server"
	}
	n := &NATS{t: t, bin: bin, dir: t.TempDir()}
	var lastErr error
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.Addr = l.Addr().String()
		_ = l.Close()
		n.URL = "nats://" + n.Addr
		if lastErr = n.launch(); lastErr == nil {
			t.Cleanup(n.Kill)
			return n
		}
	}
	t.Fatalf("brokertest: cannot start nats-server: %v", lastErr)
	return nil
}

func (n *NATS) launch() error {
	host, port, _ := net.SplitHostPort(n.Addr)
	logPath := filepath.Join(n.dir, "nats.log")
	cmd := exec.Command(n.bin, "-a", host, "-p", port, "-js", "-sd", filepath.Join(n.dir, "js"), "-l", logPath)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The port answers once the server (JetStream included) is up.
		if c, err := net.DialTimeout("tcp", n.Addr, time.Second); err == nil {
			_ = c.Close()
			n.mu.Lock()
			n.cmd, n.done = cmd, done
			n.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("nats-server on %s exited: %s", n.Addr, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("nats-server on %s did not answer", n.Addr)
		}
	}
}

// Kill stops the server at once (SIGKILL); safe to call more than once.
func (n *NATS) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts a killed server again on the same address and store
// directory: streams, messages and consumers written before Kill are back.
func (n *NATS) Restart() {
	n.t.Helper()
	var lastErr error
	for range 50 { // the port may linger briefly after a kill
		if lastErr = n.launch(); lastErr == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("brokertest: restart nats-server: %v", lastErr)
}

// Proxy is a loopback TCP proxy to a server. Down cuts every connection
// through it and refuses new ones until Up, as a broker that went away would.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr string

	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port), closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Down()
		p.wg.Wait()
	})
	return p
}

// URL returns rawURL with its host replaced by the proxy's.
func (p *Proxy) URL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Host = p.Addr
	return u.String()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Down closes every connection through the proxy and refuses new ones.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
}

// Up accepts connections again.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Conns returns how many connections pass through the proxy now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}
