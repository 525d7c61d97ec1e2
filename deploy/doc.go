// Package deploy holds the monitoring of an eventline deployment: Prometheus
// alert rules and scrape configuration (prometheus/), a Grafana dashboard
// and its provisioning (grafana/), used by the prometheus and grafana
// services of docker-compose.yml. It has no Go code; its test checks that
// the rules parse and that every metric the rules and the dashboard name is
// one a running sample exports.
package deploy
