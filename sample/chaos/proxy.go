package chaos

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// proxy is a TCP forwarder between one role and one of its dependencies,
// through which network faults are injected without root: added latency,
// loss (a chunk held back as long as a TCP retransmission would take), a
// cut (every connection closed, new ones refused: a partition whose ends
// learn of it at once) and a black hole (nothing passes, nothing is closed:
// a partition where packets vanish, which the ends only notice by their
// timeouts; what was sent arrives once it heals, as TCP retransmits it).
type proxy struct {
	name   string
	ln     net.Listener
	target string

	mu      sync.Mutex
	latency time.Duration
	loss    float64 // probability that a chunk is held back lossDelay
	cut     bool
	hole    chan struct{} // non-nil while a black hole: closed when it heals
	conns   map[net.Conn]struct{}
	rng     *rand.Rand
	wg      sync.WaitGroup
}

// lossDelay is what one lost segment costs a TCP connection: the minimum
// retransmission timeout of Linux.
const lossDelay = 200 * time.Millisecond

// newProxy listens on host (a free port) and forwards to target.
func newProxy(name, host, target string) (*proxy, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	p := &proxy{name: name, ln: ln, target: target, conns: map[net.Conn]struct{}{},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address the role connects to.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *proxy) serve(c net.Conn) {
	p.waitHole()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// track registers both ends, or closes them when the proxy is cut.
func (p *proxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

// pipe copies src to dst chunk by chunk, applying the current faults to
// each chunk, and closes both when either side ends.
func (p *proxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			delay, cut := p.latency, p.cut
			if p.loss > 0 && p.rng.Float64() < p.loss {
				delay += lossDelay
			}
			p.mu.Unlock()
			if cut {
				return
			}
			p.waitHole()
			if delay > 0 {
				time.Sleep(delay)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: close both ends
		}
	}
}

// waitHole blocks while the proxy is a black hole.
func (p *proxy) waitHole() {
	p.mu.Lock()
	h := p.hole
	p.mu.Unlock()
	if h != nil {
		<-h
	}
}

// set changes the faults; a cut closes every open connection at once.
func (p *proxy) set(latency time.Duration, loss float64, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency, p.loss, p.cut = latency, loss, cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

// blackhole stops every byte, in open and new connections, until heal.
func (p *proxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole == nil {
		p.hole = make(chan struct{})
	}
}

// heal removes every fault.
func (p *proxy) heal() {
	p.set(0, 0, false)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole != nil {
		close(p.hole)
		p.hole = nil
	}
}

// Close stops the proxy and closes its connections.
func (p *proxy) Close() {
	_ = p.ln.Close()
	p.heal()
	p.set(0, 0, true)
	p.wg.Wait()
}
