// Package demo holds `make demo`: demo.sh (the entry point), podctl (a tiny
// libcni driver standing in for a container runtime), and a test that runs
// the demo briefly and checks it cleans up after itself.
package demo
