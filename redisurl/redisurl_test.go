package redisurl_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/redisurl"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		addrs   []string
	}{
		{"redis://localhost:6379", false, []string{"localhost:6379"}},
		{"redis://:secret@10.0.0.1:6380/2?dial_timeout=3s", false, []string{"10.0.0.1:6380"}},
		{"rediss://h:1", false, []string{"h:1"}},
		{"unix:///run/redis.sock?db=1", false, []string{"/run/redis.sock"}},
		{"redis+cluster://h1:7000", true, []string{"h1:7000"}},
		{"redis+cluster://h1:7000/", true, []string{"h1:7000"}},
		{"redis+cluster://u:p@h1:7000?addr=h2:7001&addr=h3:7002&dial_timeout=2s", true, []string{"h1:7000", "h2:7001", "h3:7002"}},
		{"rediss+cluster://h1:7000?addr=h2:7001", true, []string{"h1:7000", "h2:7001"}},
	} {
		o, err := redisurl.Parse(tc.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.url, err)
			continue
		}
		if got := o.Cluster != nil; got != tc.cluster || (o.Single != nil) == tc.cluster {
			t.Errorf("Parse(%q): cluster %v, want %v", tc.url, got, tc.cluster)
		}
		if got := o.Addrs(); !slices.Equal(got, tc.addrs) {
			t.Errorf("Parse(%q).Addrs() = %v, want %v", tc.url, got, tc.addrs)
		}
		if redisurl.IsCluster(tc.url) != tc.cluster || !redisurl.IsRedis(tc.url) {
			t.Errorf("IsCluster/IsRedis(%q) wrong", tc.url)
		}
	}
	o, _ := redisurl.Parse("rediss+cluster://u:p@h1:7000?addr=h2:7001&dial_timeout=2s")
	if o.Cluster.TLSConfig == nil || o.Cluster.Username != "u" || o.Cluster.Password != "p" || o.Cluster.DialTimeout != 2*time.Second {
		t.Errorf("rediss+cluster options: TLS %v, user %q, password %q, dial timeout %v", o.Cluster.TLSConfig != nil, o.Cluster.Username, o.Cluster.Password, o.Cluster.DialTimeout)
	}
	for _, bad := range []string{
		"", "localhost:6379", "http://h:1", "redis+cluster://h1:7000/3", "redis+cluster://:secret@h1:7000?nope=1",
		"redis+cluster://h1:7000?addr=nohostport", "redis+cluster://", "redis://:secret@h:1/x", "redis+cluster://:secret@h:1%zz",
	} {
		_, err := redisurl.Parse(bad)
		if !errors.Is(err, redisurl.ErrInvalidURL) {
			t.Errorf("Parse(%q) = %v, want ErrInvalidURL", bad, err)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("Parse(%q) error shows the password: %v", bad, err)
		}
	}
}

// TestOpenCluster connects through the cluster URL of a real cluster naming
// one seed node, and writes keys of many slots through it.
func TestOpenCluster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range []string{c.URL, "redis+cluster://" + c.Addrs[1]} {
		rdb, err := redisurl.Open(u)
		if err != nil {
			t.Fatal(err)
		}
		cc, ok := rdb.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("Open(%q) = %T, want *redis.ClusterClient", u, rdb)
		}
		for i := range 50 {
			k := "{k" + strings.Repeat("x", i) + "}"
			if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
				t.Fatalf("SET %s through %s: %v", k, u, err)
			}
		}
		var masters atomic.Int32 // ForEachMaster calls concurrently
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := m.DBSize(ctx).Result()
			if n > 0 {
				masters.Add(1)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if masters := masters.Load(); masters != 3 {
			t.Fatalf("keys landed on %d masters, want 3", masters)
		}
		_ = cc.Close()
	}
	rdb, err := redisurl.Open("redis://" + c.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.Client); !ok {
		t.Fatalf("redis:// gave %T, want *redis.Client", rdb)
	}
}
