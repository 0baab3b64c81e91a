// Package peers holds the real programs Weir's end-to-end suites drive
// traffic with: an HTTP/1.1 and h2c server and client, a gRPC server and
// client, raw clients for pipelining, vectored I/O, short-lived connections
// and refused connects, and an nginx launcher.
//
// Why Go peers next to Debian's nginx, curl, wrk and h2load: a conformance
// test is only as good as its ground truth. The Go peers record exactly what
// they did — every request with its status and body size, and, when asked,
// every byte each connection wrote and read — so a suite can compare Weir's
// capture byte for byte and its HTTP records one for one with what really
// happened, instead of trusting summary numbers.
//
// The peers run as the suite's own test binary re-executed inside a pod's
// network namespace (see Main and Command). That keeps them real processes
// of the pod, children the test reaps, with nothing extra to build or
// install. Every peer is bounded: request counts, byte counts and run time
// all have explicit limits, and a peer that hits one fails loudly.
package peers
