package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

func connectionsCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("connections", flag.ContinueOnError)
	output := outputFlag(fs)
	if err := parseCommandFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	conns, err := e.client.Connections(ctx)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, conns)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOD\tPROCESS\tLOCAL\tREMOTE\tROLE\tTLS\tSTATE\tSENT\tRECV\tSKIPPED")
	for _, c := range conns {
		pod := "<unknown>"
		if c.Pod != "" {
			pod = c.Namespace + "/" + c.Pod
		}
		state := c.State
		if c.CloseReason != "" && c.CloseReason != "closed" {
			state += "(" + c.CloseReason + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s[%d]\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			c.ID, pod, orNone(c.Comm), c.PID, addr(c.Local.String()), addr(c.Remote.String()), c.Role, orDash(c.TLS), state,
			c.BytesSent, c.BytesRecv, skipped(c.Skipped))
	}
	return tw.Flush()
}

// skipped shows the bytes the kernel did not copy by reason, e.g.
// "budget=47,h2_data=90" ("h2_data" and "body" are bytes the parsers do
// not need; the others were lost), or "-".
func skipped(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for r, n := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", r, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// addr shows an unknown address (the zero netip.AddrPort) as "-".
func addr(s string) string {
	if s == "invalid AddrPort" || s == "" {
		return "-"
	}
	return s
}

func requestsCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("requests", flag.ContinueOnError)
	output := outputFlag(fs)
	pod := fs.String("pod", "", "only requests of this pod (`NAMESPACE/NAME`)")
	limit := fs.Int("limit", 0, "at most `N` requests, newest first (default: the daemon's)")
	if err := parseCommandFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *pod != "" {
		if ns, name, ok := strings.Cut(*pod, "/"); !ok || ns == "" || name == "" {
			return usageError{fmt.Sprintf("--pod must be NAMESPACE/NAME, got %q", *pod)}
		}
	}
	if *limit < 0 {
		return usageError{fmt.Sprintf("--limit must be positive, got %d", *limit)}
	}
	reqs, err := e.client.Requests(ctx, *pod, *limit)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, reqs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPOD\tPEER\tMETHOD\tPATH\tSTATUS\tLATENCY")
	for _, r := range reqs {
		peer := r.Peer
		if r.PeerPod != "" {
			peer = r.PeerPod
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Time.UTC().Format("15:04:05.000"), orNone(r.Pod), addr(peer), orNone(r.Method), orNone(r.Path),
			status(r), latency(r.LatencyMs))
	}
	return tw.Flush()
}

// status shows the HTTP status, the gRPC status when there is one, and
// marks incomplete exchanges.
func status(r wire.Request) string {
	s := "-"
	if r.Status != 0 {
		s = strconv.Itoa(r.Status)
	}
	if r.GRPCStatus != nil {
		s += fmt.Sprintf(" grpc=%d", *r.GRPCStatus)
	}
	if r.Incomplete {
		s += " (incomplete)"
	}
	return s
}

func latency(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

func featuresCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("features", flag.ContinueOnError)
	output := outputFlag(fs)
	if err := parseCommandFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	f, err := e.client.Features(ctx)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(e.stdout, f)
	}
	if !f.Capture {
		fmt.Fprintf(e.stdout, "Capture: off (%s)\n", f.Reason)
		return nil
	}
	payload := "on"
	if !f.Payload {
		payload = "off (bpf.payload=false: connections and kernel metrics only)"
	}
	fmt.Fprintf(e.stdout, "Capture: on\nPayload: %s\n", payload)
	if f.CaptureTier != "" {
		fmt.Fprintf(e.stdout, "Capture tier: %s (%s)\n", f.CaptureTier, f.CaptureTierReason)
	}
	fmt.Fprintf(e.stdout, "Tier:    %s\n", f.Tier)
	if f.TierError != "" {
		fmt.Fprintf(e.stdout, "Tier error: %s\n", f.TierError)
	}
	fmt.Fprintln(e.stdout)
	section := func(header string, rows [][]string) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, header)
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	var tiers, hooks, metrics [][]string
	for _, t := range f.Tiers {
		tiers = append(tiers, []string{t.Tier, availability(t.Available), orDash(t.Reason)})
	}
	for _, h := range f.Hooks {
		hooks = append(hooks, []string{h.Name, h.Tier, availability(h.Available), orDash(h.Reason)})
	}
	for _, m := range f.Metrics {
		metrics = append(metrics, []string{m.Name, availability(m.Available), orDash(m.Reason), orDash(m.SkyWalking)})
	}
	if err := section("TIER\tSTATUS\tREASON", tiers); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	if err := section("HOOK\tTIER\tSTATUS\tREASON", hooks); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	if err := section("METRIC\tSTATUS\tREASON\tSKYWALKING (ACCESS-LOG FIELDS)", metrics); err != nil {
		return err
	}
	if f.TLS == nil {
		return nil
	}
	// TLS libraries: probed per file, for the enrolled pods using them.
	var libs [][]string
	for _, l := range f.TLS.Libraries {
		libs = append(libs, []string{l.Path, l.Library, "probed", strings.Join(l.Symbols, ","), strings.Join(l.Users, ",")})
	}
	for _, u := range f.TLS.Unprobed {
		libs = append(libs, []string{u.Path, "-", "unprobed: " + u.Reason, "-", "-"})
	}
	fmt.Fprintln(e.stdout)
	return section("TLS LIBRARY\tKIND\tSTATUS\tFUNCTIONS\tUSED BY", libs)
}

func availability(ok bool) string {
	if ok {
		return "available"
	}
	return "unavailable"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
