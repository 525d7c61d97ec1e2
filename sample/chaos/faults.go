package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Kinds of fault.
const (
	FaultKill       = "kill"        // SIGKILL a role, restart it after Down
	FaultPause      = "pause"       // SIGSTOP a role for longer than the lease TTL, then SIGCONT
	FaultRedisEmpty = "redis-empty" // SIGKILL the read models' redis-server and start it again empty
	FaultBrokerKill = "broker-kill" // SIGKILL the saga's redis-server and start it again (its data persists)
	FaultLatency    = "latency"     // added latency on a role's link to a dependency
	FaultLoss       = "loss"        // lost segments (held back a retransmission timeout) on a link
	FaultPartition  = "partition"   // a link cut: connections closed, new ones refused
	FaultBlackhole  = "blackhole"   // a link silent: nothing passes, nothing is closed
)

// leaseTTL is the projection runners' lease TTL (projection.DefaultLeaseTTL,
// which the cart roles use); pauses last longer, so that a standby takes
// over while the holder is frozen.
const leaseTTL = 5 * time.Second

// Fault is one planned fault.
type Fault struct {
	// At is the planned start, from the start of the workload; a fault
	// starts later if the system has not recovered from the previous one.
	At     time.Duration
	Kind   string
	Target string // a role process ("projector-2"), a link ("query-api-1→redis"), "redis" or "broker"
	// For is how long the fault lasts (a killed role stays down, a role
	// stays paused, a link stays degraded).
	For     time.Duration
	Latency time.Duration // FaultLatency
	Loss    float64       // FaultLoss: probability per chunk
}

func (f Fault) String() string {
	s := fmt.Sprintf("%6.1fs %-11s %-22s for %.1fs", f.At.Seconds(), f.Kind, f.Target, f.For.Seconds())
	switch f.Kind {
	case FaultLatency:
		s += fmt.Sprintf(" +%s per chunk", f.Latency)
	case FaultLoss:
		s += fmt.Sprintf(" %.0f%% of chunks", 100*f.Loss)
	}
	return s
}

// Schedule returns the faults of a run of duration with this seed: the same
// seed and topology give the same schedule. Faults follow each other with a
// gap of mean gap after each one's end; none starts in the run's last
// quarter, which is left for the system to settle under load.
func Schedule(seed uint64, duration, gap time.Duration, roles, links []string) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73))
	kinds := []struct {
		kind   string
		weight int
	}{{FaultKill, 4}, {FaultPause, 3}, {FaultRedisEmpty, 1}, {FaultBrokerKill, 1}, {FaultLatency, 2}, {FaultLoss, 2}, {FaultPartition, 2}, {FaultBlackhole, 2}}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	secs := func(lo, hi float64) time.Duration {
		return time.Duration((lo + rng.Float64()*(hi-lo)) * float64(time.Second))
	}
	var out []Fault
	at := 3 * time.Second // a short warm-up under load first
	for at < duration*3/4 {
		n := rng.IntN(total)
		kind := kinds[0].kind
		for _, k := range kinds {
			if n < k.weight {
				kind = k.kind
				break
			}
			n -= k.weight
		}
		f := Fault{At: at, Kind: kind}
		switch kind {
		case FaultKill:
			f.Target, f.For = roles[rng.IntN(len(roles))], secs(0.2, 2)
		case FaultPause:
			f.Target, f.For = roles[rng.IntN(len(roles))], leaseTTL+secs(1, 3)
		case FaultRedisEmpty:
			f.Target, f.For = "redis", secs(0.2, 1)
		case FaultBrokerKill:
			f.Target, f.For = "broker", secs(0.2, 1)
		case FaultLatency:
			f.Target, f.For, f.Latency = links[rng.IntN(len(links))], secs(2, 5), time.Duration(20+rng.IntN(180))*time.Millisecond
		case FaultLoss:
			f.Target, f.For, f.Loss = links[rng.IntN(len(links))], secs(2, 5), 0.1+0.4*rng.Float64()
		case FaultPartition, FaultBlackhole:
			// Sometimes longer than the lease: a projector cut from Redis
			// loses its lease to the other.
			f.Target, f.For = links[rng.IntN(len(links))], secs(1, leaseTTL.Seconds()+3)
		}
		out = append(out, f)
		at += f.For + gap/2 + time.Duration(rng.Int64N(int64(gap)))
	}
	return out
}

// injected is a fault as it happened.
type injected struct {
	Fault
	Start, Healed time.Time
	Recovered     time.Duration // from Healed until read-your-writes worked again on every query API
	RecoveryErr   string        // why recovery was not seen within the bound
}

// inject runs fault f against the topology and undoes it; it returns once
// the fault is healed.
func (t *topology) inject(ctx context.Context, f Fault) error {
	wait := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	if ns := t.linkNetns(f.Target); ns != nil && (f.Kind == FaultPartition || f.Kind == FaultBlackhole) {
		// Real packets refused or dropped by the role's own kernel namespace.
		_, port, _ := net.SplitHostPort(t.proxies[f.Target].Addr())
		if err := ns.cut(f.Target, port, f.Kind == FaultBlackhole); err != nil {
			return err
		}
		wait(f.For)
		return ns.heal(f.Target)
	}
	switch f.Kind {
	case FaultKill:
		p := t.byName[f.Target]
		p.kill()
		wait(f.For)
		return p.start(startTimeout)
	case FaultPause:
		p := t.byName[f.Target]
		p.signal(syscall.SIGSTOP)
		wait(f.For)
		p.signal(syscall.SIGCONT)
	case FaultRedisEmpty:
		t.redis.kill()
		wait(f.For)
		return t.redis.start(startTimeout)
	case FaultBrokerKill:
		t.broker.kill()
		wait(f.For)
		return t.broker.start(startTimeout)
	case FaultBlackhole:
		px := t.proxies[f.Target]
		px.blackhole()
		wait(f.For)
		px.heal()
	case FaultLatency, FaultLoss, FaultPartition:
		px := t.proxies[f.Target]
		px.set(f.Latency, f.Loss, f.Kind == FaultPartition)
		wait(f.For)
		px.heal()
	default:
		return fmt.Errorf("chaos: unknown fault kind %q", f.Kind)
	}
	return nil
}

// awaitRecovery measures how long after a fault the system serves
// read-your-writes again: a new command is accepted by a command API, and
// every query API answers a read of it with ?after=<its position>. It gives
// up after bound.
func (t *topology) awaitRecovery(ctx context.Context, w *workload, rng *rand.Rand, n int, bound time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := start.Add(bound)
	var last string
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		id := fmt.Sprintf("probe-%d-%d", n, attempt)
		o := w.send(ctx, rng, "open", "POST", "/carts", fmt.Sprintf(`{"customer_id":"probe","cart_id":%q}`, id))
		if o.Outcome != outcomeAcked {
			last = fmt.Sprintf("probe command %s: %s (HTTP %d)", id, o.Outcome, o.Status)
			continue
		}
		ok := true
		for _, q := range t.queries {
			for time.Now().Before(deadline) {
				status, body := getJSON(ctx, client, q+"/carts/"+id+"?after="+o.Position)
				if status == 200 && strings.Contains(string(body), `"status":"open"`) {
					break
				}
				last = fmt.Sprintf("GET %s/carts/%s?after=%s: %d %.200s", q, id, o.Position, status, body)
				if status != 503 && status != 504 && status != 0 {
					ok = false
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if ok && time.Now().Before(deadline) {
			return time.Since(start), nil
		}
	}
	return time.Since(start), fmt.Errorf("not recovered within %s: %s", bound, last)
}

// linkNetns returns the namespace of the role of a link ("saga-1→broker"),
// nil when roles have none.
func (t *topology) linkNetns(link string) *netns {
	role, _, ok := strings.Cut(link, "→")
	if !ok {
		return nil
	}
	return t.nets[role]
}

// healAll undoes whatever a fault cut short may have left (the run ended
// during it): every link healed, every role running and resumed, Redis up.
func (t *topology) healAll() error {
	for link, px := range t.proxies {
		px.heal()
		if ns := t.linkNetns(link); ns != nil {
			if err := ns.heal(link); err != nil {
				return err
			}
		}
	}
	for _, r := range []*proc{t.redis, t.broker} {
		r.mu.Lock()
		down := r.cmd == nil
		r.mu.Unlock()
		if down {
			if err := r.start(startTimeout); err != nil {
				return err
			}
		}
	}
	for _, p := range t.roles {
		p.mu.Lock()
		running, paused := p.cmd != nil, p.paused
		p.mu.Unlock()
		switch {
		case !running:
			if err := p.start(startTimeout); err != nil {
				return err
			}
		case paused:
			p.signal(syscall.SIGCONT)
		}
	}
	return nil
}

// roleNames and linkNames are the targets of faults, in a fixed order.
func (t *topology) roleNames() []string {
	var out []string
	for _, p := range t.roles {
		out = append(out, p.name)
	}
	return out
}

func (t *topology) linkNames() []string { return slices.Clone(t.links) }
