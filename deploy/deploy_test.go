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
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/eventline/eventline/sample/app"
)

// ruleFile is the shape of a Prometheus rule file; decoding it with
// KnownFields refuses any key Prometheus would not know.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

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

// metricName finds the eventline metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\beventline_[a-z0-9_]+\b`)

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

// checkExpr does what can be done without a PromQL parser: brackets that
// balance, no empty expression.
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	if strings.TrimSpace(expr) == "" {
		t.Errorf("%s: empty expression", where)
		return
	}
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				t.Errorf("%s: unbalanced %q in %s", where, r, expr)
				return
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 || inString {
		t.Errorf("%s: unclosed brackets or quotes in %s", where, expr)
	}
}

// templateFuncs are the template functions Prometheus gives annotations,
// so that the annotations parse as it parses them.
var templateFuncs = template.FuncMap{
	"humanize": fmt.Sprint, "humanize1024": fmt.Sprint, "humanizeDuration": fmt.Sprint,
	"humanizePercentage": fmt.Sprint, "humanizeTimestamp": fmt.Sprint, "printf": fmt.Sprintf,
}

// named returns every metric name the alert rules and the dashboard use,
// with where each is used.
func named(t *testing.T) map[string][]string {
	t.Helper()
	uses := map[string][]string{}
	var rules ruleFile
	strictYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yml has no groups")
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: a rule is exactly one of alert and record", where)
			}
			if alerts[r.Alert] {
				t.Errorf("%s: defined twice", where)
			}
			alerts[r.Alert] = true
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", where)
			}
			for k, v := range r.Annotations {
				// Prometheus defines these variables before every template.
				const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
				if _, err := template.New(k).Funcs(templateFuncs).Parse(defs + v); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
			checkExpr(t, where, r.Expr)
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				uses[m] = append(uses[m], where)
			}
		}
	}
	for _, want := range []string{"EventlineProjectionLagging", "EventlineBreakerOpen", "EventlineDeadLetters",
		"EventlineOrdersStuckPending", "EventlineCommandErrors"} {
		if !alerts[want] {
			t.Errorf("alerts.yml has no %s", want)
		}
	}

	var prom map[string]any
	strictYAML(t, filepath.Join("prometheus", "prometheus.yml"), &prom)
	if files, _ := prom["rule_files"].([]any); len(files) != 1 || !strings.HasSuffix(fmt.Sprint(files[0]), "alerts.yml") {
		t.Errorf("prometheus.yml does not load alerts.yml: %v", prom["rule_files"])
	}

	b, err := os.ReadFile(filepath.Join("grafana", "dashboards", "eventline.json"))
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
			checkExpr(t, where, q.Expr)
			for _, m := range metricName.FindAllString(q.Expr, -1) {
				uses[m] = append(uses[m], where)
			}
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
