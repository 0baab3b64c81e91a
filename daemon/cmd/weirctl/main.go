// Command weirctl is the command-line client of weir-daemon's HTTP API.
//
//	weirctl [--http ADDR] [--timeout D] COMMAND [flags]
//
// The daemon address comes from --http, else $WEIR_HTTP, else
// 127.0.0.1:9847. Each command is an entry in the commands table with its
// own flags; new views (connections, features, requests, services, topology,
// endpoints, top) are added there.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

const (
	defaultHTTP = "127.0.0.1:9847"
	envHTTP     = "WEIR_HTTP"

	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what a command runs with; tests supply their own.
type env struct {
	client *wire.Client
	stdout io.Writer
	now    func() time.Time
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

// usageError is a command-line mistake: exit code 2 and usage help.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// commands is the dispatch table: a new command is a function in its own
// file plus one line here.
func commands() []command {
	return []command{
		{name: "pods", summary: "list the pods enrolled with the daemon", run: podsCmd},
		{name: "connections", summary: "list live and recently closed connections of monitored pods", run: connectionsCmd},
		{name: "requests", summary: "list the latest HTTP exchanges", run: requestsCmd},
		{name: "features", summary: "show which eBPF hooks and kernel metrics this node supports", run: featuresCmd},
		{name: "services", summary: "list services with their HTTP and TCP metrics", run: servicesCmd},
		{name: "topology", summary: "list client → server edges between services, with their metrics", run: topologyCmd},
		{name: "endpoints", summary: "list the endpoints of SERVICE (SERVICE.NAMESPACE)", run: endpointsCmd},
		{name: "top", summary: "live view of the busiest services and edges (Ctrl-C to quit)", run: topCmd},
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv, time.Now))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, now func() time.Time) int {
	fs := flag.NewFlagSet("weirctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("http", cmp.Or(getenv(envHTTP), defaultHTTP), "weir-daemon HTTP API `address` (env "+envHTTP+")")
	timeout := fs.Duration("timeout", wire.DefaultClientTimeout, "request timeout")
	usage := func() {
		fmt.Fprintln(stderr, "Usage: weirctl [flags] COMMAND [command flags]\n\nCommands:")
		for _, c := range commands() {
			fmt.Fprintf(stderr, "  %-12s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return exitOK
		}
		fmt.Fprintln(stderr, "weirctl:", err)
		usage()
		return exitUsage
	}
	if fs.NArg() == 0 {
		usage()
		return exitUsage
	}
	idx := slices.IndexFunc(commands(), func(c command) bool { return c.name == fs.Arg(0) })
	if idx < 0 {
		fmt.Fprintf(stderr, "weirctl: unknown command %q\n", fs.Arg(0))
		usage()
		return exitUsage
	}
	client, err := wire.NewClient(*addr, nil)
	if err != nil {
		fmt.Fprintln(stderr, "weirctl:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err = commands()[idx].run(ctx, env{client: client, stdout: stdout, now: now}, fs.Args()[1:])
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "weirctl %s: %v\n", fs.Arg(0), err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "weirctl:", err)
		return exitError
	}
}

// outputFlag adds the common -o flag to a command's flag set.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "table", "output format: table or json")
}

func parseCommandFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// checkOutput validates the value of -o.
func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return usageError{fmt.Sprintf("-o must be table or json, got %q", output)}
	}
	return nil
}

// writeJSON prints v indented, for -o json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func podsCmd(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("pods", flag.ContinueOnError)
	output := outputFlag(fs)
	if err := parseCommandFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	pods, err := e.client.Pods(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(pods, func(a, b wire.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	if *output == "json" {
		return writeJSON(e.stdout, pods)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tUID\tSANDBOX\tNETNS-INODE\tHOST-VETH\tIPS\tAGE")
	for _, p := range pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			orNone(p.Namespace), orNone(p.Name), orNone(p.UID), orNone(shortID(p.SandboxID)), p.NetnsInode,
			orNone(p.HostVeth), orNone(strings.Join(p.IPs, ",")), age(e.now(), p.EnrolledAt))
	}
	return tw.Flush()
}

func orNone(s string) string { return cmp.Or(s, "<none>") }

// shortID abbreviates a container ID the way crictl and docker do.
func shortID(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

// age formats how long ago t was, kubectl style: 45s, 12m, 5h, 3d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
