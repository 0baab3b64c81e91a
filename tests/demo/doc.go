// Package demo holds `make demo`: demo.sh (the entry point), podctl (a tiny
// libcni driver standing in for a container runtime), app (the shop the
// demo runs in its pods: frontend, catalog over gRPC, reviews with an error
// route, and a load generator), and the tests: one runs the demo briefly and
// checks it cleans up after itself; one runs it with traffic and checks,
// through the API and in headless Chromium, that Weir shows the shop's
// services, edges, errors and endpoints.
package demo
