// Package web is the sample's web page: a shop (customers, carts, checkout,
// the order followed through the saga) and an operations view (projection
// builds, checkpoints, lag, rebuilds, a live tail of the event log), served
// by the query side of the sample.
//
// The page is three static files embedded in the binary (no build step, no
// CDN). It reads the query API and a Server-Sent Events stream that this
// package feeds from Redis alone: projection status (package projection),
// and the eventlog projection (TailProjection), a capped Redis stream of the
// latest records that a projector writes like any other read model. The
// browser never reads the event store.
//
// Commands go to the command API: in "cart serve" it is the same process;
// in the split deployment the query API forwards the command routes to
// Config.CommandURL, so the page stays on one origin and the command API
// needs no CORS.
//
// Actions that change the system (a forced rebuild) are disabled unless
// Config.AdminToken is set; then they are POST requests carrying the token in
// the Authorization header (never a cookie, so another site cannot forge
// them) from the page's own origin.
package web
