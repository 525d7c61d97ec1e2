package esdb

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

func TestConfigValidate(t *testing.T) {
	good := []string{
		"esdb://localhost:2113?tls=false",
		"esdb://admin:changeit@localhost:2113",
		"esdb://node1:2113,node2:2113,node3:2113?nodePreference=leader&tlsVerifyCert=false",
		"esdb+discover://cluster.example.com:2113?maxDiscoverAttempts=3&discoveryInterval=50&gossipTimeout=2",
		"esdb://localhost?TLS=false&keepAliveInterval=-1&defaultDeadline=2000",
	}
	for _, u := range good {
		if err := (Config{URL: u}).Validate(); err != nil {
			t.Errorf("Validate(%q): %v", u, err)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string // in the message
	}{
		{Config{}, "URL is required"},
		{Config{URL: "http://localhost:2113"}, "invalid scheme"},
		{Config{URL: "esdb://"}, "doesn't have an host"},
		{Config{URL: "esdb://localhost:port"}, "invalid port"},
		{Config{URL: "esdb://localhost:2113?tls=flase"}, "true or false"},
		{Config{URL: "esdb://localhost:2113?tsl=false"}, `unknown setting "tsl"`},
		{Config{URL: "esdb://localhost:2113?nodePreference=fastest"}, "NodePreference"},
		{Config{URL: "esdb://localhost:2113?maxDiscoverAttempts=many"}, "integer"},
		{Config{URL: "esdb://localhost:2113?defaultDeadline=soon"}, "defaultDeadline"},
		{Config{URL: "esdb://localhost:2113/path"}, "unsupported URL path"},
		{Config{URL: "esdb://:secret@localhost:2113"}, "empty username"},
		{Config{URL: "esdb://localhost:2113?tlsCAFile=/does/not/exist.pem"}, "exist.pem"},
		{Config{URL: "esdb://localhost:2113", MaxEventSize: -1}, "MaxEventSize"},
		{Config{URL: "esdb://localhost:2113", MinBackoff: -time.Second}, "MinBackoff"},
		{Config{URL: "esdb://localhost:2113", MinBackoff: time.Minute, MaxBackoff: time.Second}, "above MaxBackoff"},
		{Config{URL: "esdb://localhost:2113", StreamPrefix: "$tenant-"}, "StreamPrefix"},
		{Config{URL: "esdb://localhost:2113", StreamPrefix: "a b"}, "StreamPrefix"},
	} {
		err := tc.cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig mentioning %q", tc.cfg, err, tc.want)
		}
		if s, err := Open(t.Context(), tc.cfg); s != nil || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Open(%+v) = %v, %v", tc.cfg, s, err)
		}
	}
}

func TestConfigErrorsHidePasswords(t *testing.T) {
	err := Config{URL: "esdb://admin:s3cret@localhost:2113?tls=maybe"}.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "admin:***@localhost") {
		t.Fatalf("error %v shows the password or hides the user", err)
	}
}

func TestConfigUsesClientParsing(t *testing.T) {
	cfg, err := parseURL("esdb://admin:changeit@a:1,b:2?tls=false&nodePreference=follower&maxDiscoverAttempts=3")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DisableTLS || cfg.NodePreference != esdb.NodePreferenceFollower || cfg.MaxDiscoverAttempts != 3 ||
		len(cfg.GossipSeeds) != 2 || cfg.Username != "admin" || cfg.Password != "changeit" {
		t.Fatalf("parsed %+v", cfg)
	}
	d := Config{URL: "esdb://x"}.withDefaults()
	if d.MaxEventSize != DefaultMaxEventSize || d.MinBackoff != DefaultMinBackoff || d.MaxBackoff != DefaultMaxBackoff || d.Logger == nil {
		t.Fatalf("defaults = %+v", d)
	}
}
