// Package deploy holds the monitoring of an eventline deployment: Prometheus
// alert rules and scrape configuration (prometheus/), a Grafana dashboard
// and its provisioning (grafana/), used by the prometheus and grafana
// services of docker-compose.yml. It has no Go code; its test checks that
// the rules and the dashboard's queries parse as Prometheus parses them and
// that every metric they name is one a running sample exports.
//
// It is a Go module of its own (go.mod here, with a replace pointing at the
// repository), so that the Prometheus server's packages its test uses never
// enter the main module's dependency graph. Run its test from this folder:
// go test ./...
package deploy
