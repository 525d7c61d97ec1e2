package brokertest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/freeport"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// RabbitStartTimeout bounds how long StartRabbit and Rabbit.Start wait for
// the node to accept AMQP connections. A RabbitMQ node boots in 5–25 s on a
// busy machine.
const RabbitStartTimeout = 120 * time.Second

// rabbitServerScripts are where the upstream rabbitmq-server script may be.
// Debian's /usr/sbin/rabbitmq-server is a wrapper that runs that script as
// user rabbitmq and sends its output to /var/log/rabbitmq, the system node's
// log directory; the test runs the script itself, as the test's own user.
var rabbitServerScripts = []string{"/usr/lib/rabbitmq/bin/rabbitmq-server"}

// Rabbit is a private RabbitMQ node: its own node name, AMQP and
// distribution ports on the loopback, data, log, configuration and Erlang
// cookie in a temporary directory, so that it shares nothing with a system
// node on the same machine but the Erlang port mapper (epmd). A test may stop
// or kill it and start it again on the same ports and data: durable queues
// and the persistent messages in them survive, as on a real broker restart.
// It is killed when the test ends.
type Rabbit struct {
	// Addr is the AMQP listener's host:port; URL the guest user's amqp:// URL
	// for it.
	Addr, URL string
	// Node is the Erlang node name, eltest<port>@localhost.
	Node string

	t      testing.TB
	script string
	dir    string
	env    []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// StartRabbit starts a private RabbitMQ node on free loopback ports and
// waits until it accepts AMQP connections. Without Debian's rabbitmq-server
// it skips the test, or fails it when EVENTLINE_REQUIRE_AMQP is set; a node
// that does not come up fails the test.
func StartRabbit(t testing.TB) *Rabbit {
	t.Helper()
	script := ""
	for _, s := range rabbitServerScripts {
		if _, err := os.Stat(s); err == nil {
			script = s
			break
		}
	}
	if script == "" {
		s, err := exec.LookPath("rabbitmq-server")
		if err != nil {
			unavailable(t, EnvRequireAMQP, "no rabbitmq-server script (%s): %v", strings.Join(rabbitServerScripts, ", "), err)
		}
		script = s
	}
	r := &Rabbit{t: t, script: script, dir: t.TempDir()}
	t.Cleanup(r.Kill)
	var lastErr error
	for range 3 { // a free port may be taken between probe and listen
		if lastErr = r.configure(); lastErr != nil {
			t.Fatalf("brokertest: configure rabbitmq: %v", lastErr)
		}
		if lastErr = r.launch(); lastErr == nil {
			return r
		}
		if !strings.Contains(lastErr.Error(), "eaddrinuse") {
			break
		}
	}
	t.Fatalf("brokertest: cannot start rabbitmq: %v", lastErr)
	return nil
}

// configure chooses the ports and writes the node's files. The node reads no
// file of the system node: its own configuration (the listener: the system
// one pins 5672), environment file (the system one names the node), empty
// plugin list, feature flags and cookie.
func (r *Rabbit) configure() error {
	port, err := freeport.Loopback()
	if err != nil {
		return err
	}
	distPort, err := freeport.Loopback()
	if err != nil {
		return err
	}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r.URL = "amqp://guest:guest@" + r.Addr + "/"
	r.Node = fmt.Sprintf("eltest%d@localhost", port)
	home := filepath.Join(r.dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	files := map[string]string{
		"rabbitmq.conf":     "listeners.tcp.default = " + r.Addr + "\n",
		"rabbitmq-env.conf": "",
		"enabled_plugins":   "[].\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// rabbitmq-server and a rabbitmqctl pointed at this node (HOME set to
	// this directory) read the same cookie.
	cookie := filepath.Join(home, ".erlang.cookie")
	_ = os.Remove(cookie)
	if err := os.WriteFile(cookie, []byte(Name("ELTEST")), 0o400); err != nil {
		return err
	}
	r.env = []string{
		"HOME=" + home,
		"RABBITMQ_NODENAME=" + r.Node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(r.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(r.dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(r.dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(r.dir, "enabled_plugins"),
		"RABBITMQ_FEATURE_FLAGS_FILE=" + filepath.Join(r.dir, "feature_flags"),
		"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(r.dir, "plugins-expand"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(r.dir, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(r.dir, "rabbitmq.pid"),
		// Distribution on the loopback only; an epmd this node has to start
		// listens there too.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
	}
	return nil
}

// launch starts the node and waits for an AMQP handshake with it.
func (r *Rabbit) launch() error {
	r.starts++
	outPath := filepath.Join(r.dir, fmt.Sprintf("server-%d.out", r.starts))
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(r.script)
	cmd.Dir = r.dir
	// The environment of the test, less whatever would point the node at
	// another one's files.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "ERL_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, r.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: the script, the Erlang VM and its helpers are
	// killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	deadline := time.Now().Add(RabbitStartTimeout)
	for {
		// The listener opens once the node has booted and recovered its
		// durable queues; a handshake tells it from another program that
		// took the port.
		if c, err := amqp091.DialConfig(r.URL, amqp091.Config{Dial: amqp091.DefaultDial(2 * time.Second)}); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-done:
			r.mu.Lock()
			r.cmd = nil
			r.mu.Unlock()
			return fmt.Errorf("rabbitmq node %s exited: %s", r.Node, r.output(outPath))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Kill()
			return fmt.Errorf("rabbitmq node %s did not accept AMQP connections on %s within %s: %s",
				r.Node, r.Addr, RabbitStartTimeout, r.output(outPath))
		}
	}
}

// output returns the end of the server's output and of the node's log.
func (r *Rabbit) output(outPath string) string {
	tail := func(path string) string {
		b, _ := os.ReadFile(path)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return string(bytes.TrimSpace(b))
	}
	return tail(outPath) + "\nnode log: " + tail(filepath.Join(r.dir, "log", r.Node+".log"))
}

// Stop stops the node gracefully, as a service manager does (SIGTERM: the
// node closes its clients' connections with connection.close, then syncs and
// stops), and waits for it to exit; a node still running after a minute is
// killed. Safe to call on a stopped node.
func (r *Rabbit) Stop() {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		r.mu.Lock()
		r.cmd = nil
		r.mu.Unlock()
		// The script has waited for the VM; a helper may linger.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	case <-time.After(time.Minute):
		r.t.Errorf("brokertest: rabbitmq node %s did not stop within a minute; killing it", r.Node)
		r.Kill()
	}
}

// Kill stops the node at once: SIGKILL to the script, the Erlang VM and its
// helpers, as a crash would. What a transaction or a publisher confirm
// acknowledged is on disk and comes back with Start. Safe to call more than
// once.
func (r *Rabbit) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Start starts a stopped or killed node again with the same name, ports and
// data directory, and waits until it accepts AMQP connections; it fails the
// test if the node does not come up within RabbitStartTimeout.
func (r *Rabbit) Start() {
	r.t.Helper()
	r.mu.Lock()
	running := r.cmd != nil
	r.mu.Unlock()
	if running {
		r.t.Fatalf("brokertest: rabbitmq node %s is already running", r.Node)
	}
	var lastErr error
	for range 20 { // the ports may linger briefly after a kill
		if lastErr = r.launch(); lastErr == nil {
			return
		}
		if !strings.Contains(lastErr.Error(), "eaddrinuse") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.t.Fatalf("brokertest: restart rabbitmq: %v", lastErr)
}

// Running reports whether the node's process is running.
func (r *Rabbit) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}
