package main

// The aggregation views: services, topology, endpoints and the live top.
// They read /api/v1/services, /topology and /services/{name}/endpoints
// (package daemon/metrics) and decode them with the shared types of
// daemon/api/wire.

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

// Bounds of top.
const (
	topDefaultInterval = 2 * time.Second
	topMinInterval     = 100 * time.Millisecond
	topMaxRows         = 20 // rows per table in top
	clearScreen        = "\x1b[H\x1b[2J"
)

// windowFlag adds --window; empty means the daemon's default (5m).
func windowFlag(fs *flag.FlagSet) *string {
	return fs.String("window", "", "aggregation `window`, a Go duration such as 5m (daemon default 5m, at most its retention)")
}

func windowQuery(window string) (url.Values, error) {
	if window == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(window); err != nil || d <= 0 {
		return nil, usageError{fmt.Sprintf("--window %q is not a positive duration such as 5m", window)}
	}
	return url.Values{"window": {window}}, nil
}

func fetchServices(ctx context.Context, c *wire.Client, q url.Values) ([]wire.Service, error) {
	var out []wire.Service
	return out, c.GetJSONQuery(ctx, "/api/v1/services", q, &out)
}

func fetchTopology(ctx context.Context, c *wire.Client, q url.Values) (wire.Topology, error) {
	var out wire.Topology
	return out, c.GetJSONQuery(ctx, "/api/v1/topology", q, &out)
}

func fetchEndpoints(ctx context.Context, c *wire.Client, service string, q url.Values) ([]wire.Endpoint, error) {
	var out []wire.Endpoint
	err := c.GetJSONQuery(ctx, "/api/v1/services/"+url.PathEscape(service)+"/endpoints", q, &out)
	var se *wire.StatusError
	if errors.As(err, &se) && se.Status == 404 {
		return nil, fmt.Errorf("no service %q: weirctl services lists the known ones (names are SERVICE.NAMESPACE)", service)
	}
	return out, err
}

// parseViewFlags parses a view command's flags, accepting up to
// maxPositional arguments before or after them (weirctl endpoints
// catalog.shop -o json).
func parseViewFlags(fs *flag.FlagSet, args []string, maxPositional int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > maxPositional {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", pos[maxPositional])}
	}
	return pos, nil
}

func servicesCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("services", flag.ContinueOnError)
	output, window := outputFlag(fs), windowFlag(fs)
	if _, err := parseViewFlags(fs, args, 0); err != nil {
		return err
	}
	q, err := viewQuery(*output, *window)
	if err != nil {
		return err
	}
	svcs, err := fetchServices(ctx, e.client, q)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, svcs)
	}
	return servicesTable(e.stdout, svcs)
}

func viewQuery(output, window string) (url.Values, error) {
	if err := checkOutput(output); err != nil {
		return nil, err
	}
	return windowQuery(window)
}

func servicesTable(w io.Writer, svcs []wire.Service) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPODS\tRPM\tSUCCESS\tP50\tP99\tAVG\tCONNS\tSENT\tRECV\tRETRANS\tDROPS\tRTT")
	for _, s := range svcs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n",
			s.Name, s.Pods, fmtRPM(s.HTTP), fmtSuccess(s.HTTP.Requests, s.HTTP.SuccessRate),
			fmtMs(s.HTTP.Requests, s.HTTP.LatencyMs.P50), fmtMs(s.HTTP.Requests, s.HTTP.LatencyMs.P99),
			fmtMs(s.HTTP.Requests, s.HTTP.LatencyMs.Avg), s.TCP.Connects+s.TCP.Accepts,
			fmtBytes(s.TCP.BytesSent), fmtBytes(s.TCP.BytesRecv), s.TCP.Retransmits, s.TCP.Drops, fmtRTT(s.TCP.RTTMs))
	}
	return tw.Flush()
}

func topologyCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("topology", flag.ContinueOnError)
	output, window := outputFlag(fs), windowFlag(fs)
	if _, err := parseViewFlags(fs, args, 0); err != nil {
		return err
	}
	q, err := viewQuery(*output, *window)
	if err != nil {
		return err
	}
	topo, err := fetchTopology(ctx, e.client, q)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, topo)
	}
	return edgesTable(e.stdout, topo.Edges)
}

func edgesTable(w io.Writer, edges []wire.Edge) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTARGET\tPROTOCOL\tRPM\tSUCCESS\tP99\tCONNS\tSENT\tRECV\tRETRANS\tDROPS\tSTATUS")
	for _, ed := range edges {
		st := "ok"
		if ed.Error {
			st = "ERROR"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n",
			ed.Source, ed.Target, ed.Protocol, fmtRPM(ed.HTTP), fmtSuccess(ed.HTTP.Requests, ed.HTTP.SuccessRate),
			fmtMs(ed.HTTP.Requests, ed.HTTP.LatencyMs.P99), ed.TCP.Connects+ed.TCP.Accepts,
			fmtBytes(ed.TCP.BytesSent), fmtBytes(ed.TCP.BytesRecv), ed.TCP.Retransmits, ed.TCP.Drops, st)
	}
	return tw.Flush()
}

func endpointsCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("endpoints", flag.ContinueOnError)
	output, window := outputFlag(fs), windowFlag(fs)
	pos, err := parseViewFlags(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError{"missing SERVICE (SERVICE.NAMESPACE, as weirctl services lists it)"}
	}
	q, err := viewQuery(*output, *window)
	if err != nil {
		return err
	}
	eps, err := fetchEndpoints(ctx, e.client, pos[0], q)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, eps)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tRPM\tREQUESTS\tSUCCESS\tP50\tP90\tP99\tAVG")
	for _, ep := range eps {
		h := wire.HTTP{Requests: ep.Requests, RPM: ep.RPM}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			ep.Endpoint, fmtRPM(h), ep.Requests, fmtSuccess(ep.Requests, ep.SuccessRate),
			fmtMs(ep.Requests, ep.LatencyMs.P50), fmtMs(ep.Requests, ep.LatencyMs.P90),
			fmtMs(ep.Requests, ep.LatencyMs.P99), fmtMs(ep.Requests, ep.LatencyMs.Avg))
	}
	return tw.Flush()
}

// topSnapshot is what top shows, and its -o json document.
type topSnapshot struct {
	Time     time.Time      `json:"time"`
	Services []wire.Service `json:"services"`
	Edges    []wire.Edge    `json:"edges"`
}

type topOptions struct {
	output   string
	query    url.Values
	window   string
	interval time.Duration
	once     bool
	// reqTimeout bounds each refresh's requests.
	reqTimeout time.Duration
}

func topCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	output, window := outputFlag(fs), windowFlag(fs)
	interval := fs.Duration("interval", topDefaultInterval, "refresh `interval`")
	once := fs.Bool("once", false, "print one snapshot and exit instead of refreshing")
	if _, err := parseViewFlags(fs, args, 0); err != nil {
		return err
	}
	q, err := viewQuery(*output, *window)
	if err != nil {
		return err
	}
	if *interval < topMinInterval {
		return usageError{fmt.Sprintf("--interval %s is below the minimum %s", *interval, topMinInterval)}
	}
	o := topOptions{output: *output, query: q, window: cmp.Or(*window, "5m"), interval: *interval, once: *once,
		reqTimeout: wire.DefaultClientTimeout}
	if *once {
		return topRefresh(ctx, e, o)
	}
	// weirctl bounds a command by --timeout; for a live view that bound
	// applies to each refresh instead, and only Ctrl-C (or the caller
	// cancelling) ends the loop.
	if dl, ok := ctx.Deadline(); ok {
		o.reqTimeout = max(time.Until(dl), time.Second)
	}
	live, stop := signal.NotifyContext(untilCancelled(ctx), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return topLoop(live, e, o)
}

// untilCancelled returns a context that ends when ctx is cancelled, but not
// when its deadline passes. (A cancellation that comes after the deadline
// passed is not seen: ctx is already done. weirctl's own context is never
// cancelled that way; Ctrl-C is handled by the caller.)
func untilCancelled(ctx context.Context) context.Context {
	live, cancel := context.WithCancel(context.WithoutCancel(ctx))
	context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return live
}

// topLoop refreshes every o.interval until ctx ends; that end is a clean
// exit. A failed refresh stops it with the error (the daemon went away).
func topLoop(ctx context.Context, e env, o topOptions) error {
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		if err := topRefresh(ctx, e, o); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func topRefresh(ctx context.Context, e env, o topOptions) error {
	rctx, cancel := context.WithTimeout(ctx, o.reqTimeout)
	defer cancel()
	svcs, err := fetchServices(rctx, e.client, o.query)
	if err != nil {
		return err
	}
	topo, err := fetchTopology(rctx, e.client, o.query)
	if err != nil {
		return err
	}
	snap := topSnapshot{Time: e.now().UTC(), Services: svcs, Edges: topo.Edges}
	busiest := func(a, b wire.HTTP) int { return cmp.Compare(b.Requests, a.Requests) }
	slices.SortStableFunc(snap.Services, func(a, b wire.Service) int {
		return cmp.Or(busiest(a.HTTP, b.HTTP), cmp.Compare(b.TCP.BytesSent+b.TCP.BytesRecv, a.TCP.BytesSent+a.TCP.BytesRecv))
	})
	slices.SortStableFunc(snap.Edges, func(a, b wire.Edge) int {
		return cmp.Or(busiest(a.HTTP, b.HTTP), cmp.Compare(b.TCP.BytesSent+b.TCP.BytesRecv, a.TCP.BytesSent+a.TCP.BytesRecv))
	})
	if o.output == "json" {
		return writeJSON(e.stdout, snap)
	}
	var b strings.Builder
	if !o.once {
		b.WriteString(clearScreen)
	}
	fmt.Fprintf(&b, "weir top  %s  window %s  %s", e.client.Addr(), o.window, snap.Time.Format(time.TimeOnly))
	if !o.once {
		fmt.Fprintf(&b, "  (every %s, Ctrl-C to quit)", o.interval)
	}
	b.WriteString("\n\n")
	servicesTable(&b, snap.Services[:min(len(snap.Services), topMaxRows)])
	b.WriteString("\n")
	edgesTable(&b, snap.Edges[:min(len(snap.Edges), topMaxRows)])
	_, err = io.WriteString(e.stdout, b.String())
	return err
}

func fmtRPM(h wire.HTTP) string {
	if h.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", h.RPM)
}

func fmtSuccess(requests uint64, rate float64) string {
	if requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", rate*100)
}

func fmtMs(requests uint64, ms float64) string {
	if requests == 0 {
		return "-"
	}
	if ms < 10 {
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

func fmtRTT(ms float64) string {
	if ms == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", ms)
}

// fmtBytes prints a byte count in binary units: 512B, 1.5KiB, 20MiB.
func fmtBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	suffix := [...]string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
	if v < 10 {
		return fmt.Sprintf("%.1f%s", v, suffix)
	}
	return fmt.Sprintf("%.0f%s", v, suffix)
}
