package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/eventline/eventline/sample/app"
)

// promQL parses expressions as Prometheus does, with its default features.
var promQL = parser.NewParser(parser.Options{})

func strictYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// family maps a series name to its metric family: a histogram's _bucket,
// _sum and _count series belong to the histogram.
func family(name string, families map[string]bool) string {
	if families[name] {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return base
		}
	}
	return name
}

// metricNames parses expr as PromQL and returns the metric names its
// selectors name, by name or by a __name__="..." matcher. Like a rule's, the
// expression must give an instant vector or a scalar.
func metricNames(expr string) ([]string, error) {
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	if t := e.Type(); t != parser.ValueTypeVector && t != parser.ValueTypeScalar {
		return nil, fmt.Errorf("%q gives a %s, not an instant vector or a scalar", expr, t)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			names = append(names, vs.Name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				names = append(names, m.Value)
			}
		}
		return nil
	})
	if len(names) == 0 {
		return nil, fmt.Errorf("%q names no metric", expr)
	}
	return names, nil
}

// parseRules parses and validates a rule file as Prometheus does when it
// loads it (unknown fields refused, every expression parsed as PromQL, every
// annotation as a template).
func parseRules(b []byte) (*rulefmt.RuleGroups, []error) {
	return rulefmt.Parse(b, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
}

// TestRuleCheckRefusesMistakes shows that the checks below catch what a
// reload of Prometheus would refuse.
func TestRuleCheckRefusesMistakes(t *testing.T) {
	for what, expr := range map[string]string{
		"an unclosed bracket":  `rate(eventline_relay_published_events_total[5m]`,
		"an unknown function":  `ratte(eventline_relay_published_events_total[5m])`,
		"a range as a result":  `eventline_relay_published_events_total[5m]`,
		"a bad duration":       `rate(eventline_relay_published_events_total[5 m])`,
		"a comparison of text": `eventline_relay_lag_events > "x"`,
	} {
		rules := "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '" + expr + "'\n"
		_, errs := parseRules([]byte(rules))
		if _, err := metricNames(expr); len(errs) == 0 && err == nil {
			t.Errorf("a rule with %s (%s) was accepted", what, expr)
		}
	}
	for what, rules := range map[string]string{
		"an unknown field":      "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        severity: page\n",
		"a broken annotation":   "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          summary: '{{ $value '\n",
		"both alert and record": "groups:\n  - name: g\n    rules:\n      - alert: A\n        record: b\n        expr: up\n",
	} {
		if _, errs := parseRules([]byte(rules)); len(errs) == 0 {
			t.Errorf("a rule file with %s was accepted", what)
		}
	}
	if names, err := metricNames(`sum by (api) (rate({__name__="eventline_http_requests_total"}[5m])) / on() group_left eventline_x_total`); err != nil ||
		!slices.Equal(names, []string{"eventline_http_requests_total", "eventline_x_total"}) {
		t.Errorf("metricNames: %v, %v", names, err)
	}
}

// named returns every metric name the alert rules and the dashboard use,
// with where each is used.
func named(t *testing.T) map[string][]string {
	t.Helper()
	uses := map[string][]string{}
	use := func(where, expr string) {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, m := range names {
			uses[m] = append(uses[m], where)
		}
	}
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, errs := parseRules(b)
	for _, err := range errs {
		t.Errorf("alerts.yml: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yml has no groups")
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		if len(g.Rules) == 0 {
			t.Errorf("group %q has no rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Record != "" {
				where = "record " + r.Record
			}
			if r.Alert != "" && alerts[r.Alert] {
				t.Errorf("%s: defined twice", where)
			}
			alerts[r.Alert] = true
			if r.Alert != "" && r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", where)
			}
			use(where, r.Expr)
		}
	}
	for _, want := range []string{"EventlineProjectionLagging", "EventlineBreakerOpen", "EventlineDeadLetters",
		"EventlineOrdersStuckPending", "EventlineCommandErrors", "EventlineHTTP5xx"} {
		if !alerts[want] {
			t.Errorf("alerts.yml has no %s", want)
		}
	}

	var prom map[string]any
	strictYAML(t, filepath.Join("prometheus", "prometheus.yml"), &prom)
	if files, _ := prom["rule_files"].([]any); len(files) != 1 || !strings.HasSuffix(fmt.Sprint(files[0]), "alerts.yml") {
		t.Errorf("prometheus.yml does not load alerts.yml: %v", prom["rule_files"])
	}

	b, err = os.ReadFile(filepath.Join("grafana", "dashboards", "eventline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard: %v (uid %q, %d panels)", err, dash.UID, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		where := "panel " + p.Title
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, q := range p.Targets {
			use(where, q.Expr)
		}
	}
	return uses
}

// TestEveryMetricNamedIsExported runs the sample (cart serve: every role in
// one process, on a SQLite file and the embedded Redis), drives customers,
// carts and a checkout through the saga, scrapes /metrics and checks that
// every metric the alert rules and the dashboard use is there.
func TestEveryMetricNamedIsExported(t *testing.T) {
	uses := named(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.RoleServe, app.Config{
			StoreURL: filepath.Join(t.TempDir(), "events.db"), Addr: "127.0.0.1:0",
			Stdout: pw, Logger: slog.New(slog.DiscardHandler),
		})
		pw.Close()
	}()
	line, err := bufioLine(pr)
	if err != nil {
		t.Fatalf("cart serve did not start: %v (%v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	_, url, _ := strings.Cut(strings.TrimSpace(line), " listening on ")
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cart serve: %v", err)
		}
	}()

	post(t, url+"/customers", `{"customer_id":"ann","credit_limit_cents":100000}`, 201)
	post(t, url+"/carts", `{"customer_id":"ann","cart_id":"c1"}`, 201)
	post(t, url+"/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":150}`, 200)
	post(t, url+"/carts", `{"customer_id":"ann","cart_id":"c1"}`, 409) // a conflict: an outcome of its own
	post(t, url+"/carts/c1/checkout", ``, 200)

	var families map[string]bool
	deadline := time.Now().Add(time.Minute)
	for {
		families = scrape(t, url+"/metrics")
		// The order's final state is the last thing the saga does.
		if families["eventline_saga_order_completion_seconds"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !families[family(n, families)] {
			t.Errorf("%s (used by %s) is not exported by cart serve", n, strings.Join(slices.Compact(uses[n]), ", "))
		}
	}
	t.Logf("%d metric names in the rules and the dashboard, all checked against %d exported families", len(names), len(families))
}

func bufioLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

func post(t *testing.T, url, body string, want int) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("POST %s: %d %s, want %d", url, res.StatusCode, b, want)
	}
}

func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]bool{}
	for name := range fams {
		out[name] = true
	}
	return out
}
