package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles of the topology and how many processes of each run.
var topologyRoles = []struct {
	role string
	n    int
}{{"command-api", 2}, {"projector", 2}, {"query-api", 2}, {"saga", 1}}

// startTimeout bounds the start of one process.
const startTimeout = 30 * time.Second

// topology is the running system under test.
type topology struct {
	cfg      Config
	storeURL string // as the checker opens it (not through a proxy)
	dropDB   func() error
	redis    *proc             // the read models' Redis: projectors and query APIs
	broker   *proc             // the saga's Redis: its relay's checkpoint and lease, its streams
	roles    []*proc           // every role process
	byName   map[string]*proc  // role processes by name
	proxies  map[string]*proxy // "<role process>→<dependency>"
	links    []string          // keys of proxies, sorted as created
	nets     map[string]*netns // role processes' network namespaces (root only), by name
	commands []string          // command API base URLs
	queries  []string          // query API base URLs
}

// startTopology starts Redis, prepares the store and starts every role, each
// reaching Redis and (for PostgreSQL) the store through a fault proxy of its
// own.
func startTopology(ctx context.Context, cfg Config) (t *topology, err error) {
	t = &topology{cfg: cfg, byName: map[string]*proc{}, proxies: map[string]*proxy{}}
	defer func() {
		if err != nil {
			t.close()
			t = nil
		}
	}()
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return t, errors.New("chaos: no redis-server on PATH (Debian: apt-get install redis-server)")
	}
	raddr, err := freeAddr()
	if err != nil {
		return t, err
	}
	t.redis = newRedisProc("redis", redisBin, cfg.Dir, raddr, false)
	if err := t.redis.start(startTimeout); err != nil {
		return t, err
	}
	// The saga's messages live in Redis Streams: unlike the read models,
	// they cannot be rebuilt from the log once lost, so its Redis persists.
	baddr, err := freeAddr()
	if err != nil {
		return t, err
	}
	bdir := filepath.Join(cfg.Dir, "broker")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return t, err
	}
	t.broker = newRedisProc("broker", redisBin, bdir, baddr, true)
	if err := t.broker.start(startTimeout); err != nil {
		return t, err
	}

	storeAddr := "" // host:port of a networked store, proxied per role
	switch {
	case cfg.Store == StoreSQLite:
		t.storeURL = filepath.Join(cfg.Dir, "events.db")
	default:
		u, drop, err := newDatabase(ctx, cfg.PostgresURL)
		if err != nil {
			return t, err
		}
		t.storeURL, t.dropDB = u, drop
		pu, _ := url.Parse(u)
		storeAddr = pu.Host
	}

	var prefix, subnet string
	if cfg.netns {
		t.nets = map[string]*netns{}
		prefix, subnet = netnsPrefix()
	}
	for _, r := range topologyRoles {
		for i := 1; i <= r.n; i++ {
			name := fmt.Sprintf("%s-%d", r.role, i)
			proxyHost := "127.0.0.1"
			var ns *netns
			var addr string
			if cfg.netns {
				if ns, err = newNetns(prefix, subnet, len(t.nets)); err != nil {
					return t, err
				}
				t.nets[name] = ns
				proxyHost, addr = ns.hostIP, net.JoinHostPort(ns.nsIP, "8080")
			} else if addr, err = freeAddr(); err != nil {
				return t, err
			}
			env := []string{"EVENTLINE_ADDR=" + addr, "EVENTLINE_LOG_LEVEL=info"}
			if r.role == "saga" {
				px, err := t.proxy(name, "broker", proxyHost, baddr)
				if err != nil {
					return t, err
				}
				env = append(env, "EVENTLINE_REDIS_URL=redis://"+px.Addr())
			} else if r.role != "command-api" {
				px, err := t.proxy(name, "redis", proxyHost, raddr)
				if err != nil {
					return t, err
				}
				env = append(env, "EVENTLINE_REDIS_URL=redis://"+px.Addr())
			}
			if r.role != "query-api" {
				su := t.storeURL
				if storeAddr != "" {
					px, err := t.proxy(name, "store", proxyHost, storeAddr)
					if err != nil {
						return t, err
					}
					su = strings.Replace(su, "@"+storeAddr+"/", "@"+px.Addr()+"/", 1)
				}
				env = append(env, "EVENTLINE_STORE_URL="+su)
			}
			p := &proc{name: name, bin: cfg.CartBinary, args: []string{r.role}, env: env, addr: addr,
				log: filepath.Join(cfg.Dir, name+".log")}
			if ns != nil {
				p.bin, p.args = ns.command(cfg.CartBinary, r.role)
			}
			t.roles = append(t.roles, p)
			t.byName[name] = p
			switch r.role {
			case "command-api":
				t.commands = append(t.commands, "http://"+addr)
			case "query-api":
				t.queries = append(t.queries, "http://"+addr)
			}
		}
	}
	for _, p := range t.roles {
		if err := p.start(startTimeout); err != nil {
			return t, err
		}
	}
	return t, nil
}

func (t *topology) proxy(role, dep, host, target string) (*proxy, error) {
	px, err := newProxy(role+"→"+dep, host, target)
	if err != nil {
		return nil, err
	}
	key := role + "→" + dep
	t.proxies[key] = px
	t.links = append(t.links, key)
	return px, nil
}

// close stops everything and drops a database it created.
func (t *topology) close() {
	for _, p := range t.roles {
		p.stop(5 * time.Second)
	}
	for _, px := range t.proxies {
		px.Close()
	}
	for _, n := range t.nets {
		n.close()
	}
	for _, r := range []*proc{t.redis, t.broker} {
		if r != nil {
			r.kill()
		}
	}
	if t.dropDB != nil {
		_ = t.dropDB()
	}
}

// newDatabase creates a database with a random name on the PostgreSQL server
// of serverURL, as internal/pgtest does for tests, and returns its URL and a
// func that drops it.
func newDatabase(ctx context.Context, serverURL string) (string, func() error, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "eventline_chaos_" + hex.EncodeToString(b)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("chaos: PostgreSQL at %s: %w (give --postgres, or --store sqlite)", redact(serverURL), err)
	}
	defer conn.Close(cctx)
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("chaos: create database %s: %w", name, err)
	}
	u, _ := url.Parse(serverURL)
	u.Path = "/" + name
	if u.Host == "" || !strings.Contains(u.String(), "@") {
		// The per-role proxies rewrite "@host:port/"; make sure it is there.
		if u.User == nil {
			u.User = url.User("postgres")
		}
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		u.Host = net.JoinHostPort(u.Host, "5432")
	}
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	}
	return u.String(), drop, nil
}

// redact hides a password in a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
