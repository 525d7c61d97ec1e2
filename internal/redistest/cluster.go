package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/freeport"
	"github.com/redis/go-redis/v9"
)

// ClusterOptions shape a private Redis Cluster.
type ClusterOptions struct {
	// Masters is the number of masters; at least 3 (what redis-cli
	// --cluster create requires). Default 3.
	Masters int
	// ReplicasPerMaster is the number of replicas of each master. A master
	// without a replica cannot be failed over.
	ReplicasPerMaster int
	// NodeTimeout is cluster-node-timeout: how long a node may be unreachable
	// before the others consider it failed and its replica takes over.
	// Default 3s.
	NodeTimeout time.Duration
}

// Cluster is a private Redis Cluster for one test: Masters ×
// (1 + ReplicasPerMaster) redis-server processes with cluster-enabled on
// free loopback ports, joined by redis-cli --cluster create. It is torn down
// when the test ends.
//
// Nodes are numbered 0..len(Addrs)-1 in the order they were started; which
// of them is a master changes with failovers (MasterOf, Role).
type Cluster struct {
	// Addrs are the nodes' host:port, in node order.
	Addrs []string
	// URL names the cluster in eventline's cluster URL form,
	// "redis+cluster://<first>?addr=<second>&addr=...", as package redisurl
	// reads it.
	URL string

	t     testing.TB
	opts  ClusterOptions
	nodes []*Server
}

// clusterWait bounds every wait for the cluster to settle.
const clusterWait = 60 * time.Second

// StartCluster starts a cluster and waits until every node reports
// cluster_state:ok with all 16384 slots covered and every replica in sync.
// Without redis-server and redis-cli on PATH the test is skipped, or fails
// when EVENTLINE_REQUIRE_REDIS_SERVER is set (as in CI).
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Masters == 0 {
		opts.Masters = 3
	}
	if opts.Masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, got %d", opts.Masters)
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = 3 * time.Second
	}
	bin, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err := errors.Join(err1, err2); err != nil {
		if os.Getenv("EVENTLINE_REQUIRE_REDIS_SERVER") != "" {
			t.Fatalf("redistest: cannot start a Redis Cluster and EVENTLINE_REQUIRE_REDIS_SERVER is set: %v", err)
		}
		t.Skipf("redistest: cannot start a Redis Cluster (redis-server and redis-cli from Debian's redis-server and redis-tools): %v", err)
	}
	c := &Cluster{t: t, opts: opts}
	n := opts.Masters * (1 + opts.ReplicasPerMaster)
	for i := range n {
		s, err := c.startNode(bin)
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.ReplicasPerMaster), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis+cluster://" + c.Addrs[0]
	for i, a := range c.Addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		c.URL += sep + "addr=" + a
	}
	c.WaitHealthy()
	t.Logf("redistest: started a Redis Cluster of %d masters × %d replicas at %s", opts.Masters, opts.ReplicasPerMaster, strings.Join(c.Addrs, " "))
	return c
}

func (c *Cluster) startNode(bin string) (*Server, error) {
	s := &Server{Kind: KindProcess, t: c.t, dir: c.t.TempDir(), args: []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
		// A replica takes over however long it was cut off from its
		// master: a test that kills a master wants the failover.
		"--cluster-replica-validity-factor", "0",
	}}
	var lastErr error
	for range 5 {
		port, err := freeClusterPort()
		if err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr
		if lastErr = s.launch(bin); lastErr == nil {
			c.t.Cleanup(s.Kill)
			return s, nil
		}
	}
	return nil, lastErr
}

// freeClusterPort returns a free loopback port P whose cluster bus port
// P+10000 is free too.
func freeClusterPort() (int, error) {
	for range 100 {
		p, err := freeport.Loopback()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair P, P+10000 on 127.0.0.1")
}

// Options returns client options naming every node, with the cluster's
// layout reloaded every second while the client is used (as package
// redisurl's clients do), so that a client finds a killed master's successor
// quickly. Each call returns a new value the caller may change.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{Addrs: slices.Clone(c.Addrs), ClusterStateReloadInterval: time.Second}
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	cc := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Len returns the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// Node returns node i, e.g. for its Addr.
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Kill stops node i at once (SIGKILL). A killed master's replica takes over
// after NodeTimeout; WaitHealthy waits for that.
func (c *Cluster) Kill(i int) { c.nodes[i].Kill() }

// WaitReplicated waits until every replica of master i has acknowledged
// every write the master took so far (WAIT), so that a Kill after it loses
// nothing written before: replication is asynchronous, and a replica
// still in its first sync of a new cluster would otherwise take over
// without the keys written meanwhile.
func (c *Cluster) WaitReplicated(i int) {
	c.t.Helper()
	want := int64(c.opts.ReplicasPerMaster)
	if want == 0 {
		return
	}
	rdb := c.nodeClient(i)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	c.poll(ctx, fmt.Sprintf("the replicas of node %d to acknowledge its writes", i), func() error {
		n, err := rdb.Wait(ctx, int(want), time.Second).Result()
		if err == nil && n < want {
			err = fmt.Errorf("%d of %d replicas acknowledged", n, want)
		}
		return err
	})
}

// Restart starts killed node i again on its address with its nodes.conf, so
// it rejoins as the node it was; a master that was failed over comes back
// as a replica of its successor and syncs from it (it has no data of its
// own: nodes run without persistence). Restart waits until the cluster is
// healthy again. Restarting a master before its replica took over would
// bring its slots back empty: WaitHealthy after Kill first.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.nodes[i].Restart()
	c.WaitHealthy()
}

// Failover makes replica i take over from its master with CLUSTER FAILOVER
// (the coordinated manual failover, which loses no acknowledged write) and
// waits until it is master and the cluster is healthy.
func (c *Cluster) Failover(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	rdb := c.nodeClient(i)
	defer rdb.Close()
	if err := rdb.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		c.t.Fatalf("redistest: CLUSTER FAILOVER on node %d (%s): %v", i, c.Addrs[i], err)
	}
	c.poll(ctx, fmt.Sprintf("node %d (%s) to become master", i, c.Addrs[i]), func() error {
		role, err := rdb.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("role %v", role)
		}
		return nil
	})
	c.WaitHealthy()
}

// Role returns "master" or "slave" for live node i, as it reports itself.
func (c *Cluster) Role(i int) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := c.nodeClient(i)
	defer rdb.Close()
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 {
		c.t.Fatalf("redistest: ROLE of node %d: %v", i, err)
	}
	s, _ := role[0].(string)
	return s
}

// MasterOf returns the node that masters key's hash slot, as the live
// nodes see it.
func (c *Cluster) MasterOf(key string) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range c.nodes {
		if !c.nodes[i].alive() {
			continue
		}
		rdb := c.nodeClient(i)
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			rdb.Close()
			continue
		}
		m, err := c.slotMasters(ctx, rdb)
		rdb.Close()
		if err != nil {
			continue
		}
		return c.index(m[int(slot)])
	}
	c.t.Fatalf("redistest: no live node tells the master of %q", key)
	return -1
}

// ReplicaOf returns a live replica of master node m.
func (c *Cluster) ReplicaOf(m int) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range c.nodes {
		if i == m || !c.nodes[i].alive() {
			continue
		}
		rdb := c.nodeClient(i)
		info, err := rdb.Info(ctx, "replication").Result()
		rdb.Close()
		if err != nil {
			continue
		}
		f := infoFields(info)
		if f["role"] == "slave" && net.JoinHostPort(f["master_host"], f["master_port"]) == c.Addrs[m] {
			return i
		}
	}
	c.t.Fatalf("redistest: node %d (%s) has no live replica", m, c.Addrs[m])
	return -1
}

// WaitHealthy waits (bounded) until every live node reports cluster_state:ok,
// every live node sees all 16384 slots served by the same live masters, and
// every live replica's link to its master is up.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	c.poll(ctx, "the cluster to be healthy", func() error { return c.healthy(ctx) })
}

func (c *Cluster) healthy(ctx context.Context) error {
	var first map[int]string
	for i, s := range c.nodes {
		if !s.alive() {
			continue
		}
		rdb := c.nodeClient(i)
		err := func() error {
			defer rdb.Close()
			info, err := rdb.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if f := infoFields(info); f["cluster_state"] != "ok" || f["cluster_slots_assigned"] != "16384" {
				return fmt.Errorf("cluster_state %s, %s slots assigned", f["cluster_state"], f["cluster_slots_assigned"])
			}
			m, err := c.slotMasters(ctx, rdb)
			if err != nil {
				return err
			}
			for slot, addr := range m {
				if j := c.index(addr); j < 0 || !c.nodes[j].alive() {
					return fmt.Errorf("slot %d served by %s, not a live node", slot, addr)
				}
			}
			if first == nil {
				first = m
			} else if !maps.Equal(first, m) {
				return errors.New("nodes disagree on who serves which slot")
			}
			repl, err := rdb.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if f := infoFields(repl); f["role"] == "slave" && f["master_link_status"] != "up" {
				return fmt.Errorf("replica link to %s:%s is %s", f["master_host"], f["master_port"], f["master_link_status"])
			}
			return nil
		}()
		if err != nil {
			return fmt.Errorf("node %d (%s): %w", i, c.Addrs[i], err)
		}
	}
	if len(first) != 16384 {
		return fmt.Errorf("%d slots covered", len(first))
	}
	return nil
}

// slotMasters returns slot → master address from CLUSTER SHARDS on rdb.
func (c *Cluster) slotMasters(ctx context.Context, rdb *redis.Client) (map[int]string, error) {
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	m := make(map[int]string, 16384)
	for _, sh := range shards {
		addr := ""
		for _, n := range sh.Nodes {
			if n.Role == "master" {
				addr = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			}
		}
		if addr == "" {
			continue
		}
		for _, r := range sh.Slots {
			for s := r.Start; s <= r.End; s++ {
				m[int(s)] = addr
			}
		}
	}
	return m, nil
}

func (c *Cluster) index(addr string) int { return slices.Index(c.Addrs, addr) }

// nodeClient is a plain client of node i, which fails at once when the node
// is down.
func (c *Cluster) nodeClient(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: c.Addrs[i], MaxRetries: -1, DialTimeout: time.Second})
}

// poll calls check until it returns nil, failing the test with its last
// error when ctx ends.
func (c *Cluster) poll(ctx context.Context, what string, check func() error) {
	c.t.Helper()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("redistest: waited %v for %s: %v", clusterWait, what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func infoFields(info string) map[string]string {
	f := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			f[k] = v
		}
	}
	return f
}
