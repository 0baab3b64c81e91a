// Command vmrun is the host side of the kernel test harness: it packs an
// initramfs holding the guest init (tests/kernels/guestinit), Go test
// binaries and the kernel modules they need, boots a kernel with it under
// QEMU's software emulation, streams the serial console to stdout and a log
// file, and turns the guest's marker lines into a summary and an exit code.
//
// It exists so that Weir's eBPF code is tested on a second kernel (Debian's
// 6.1, which has kprobes and fentry) without a VM image or network: the whole
// guest is one kernel file plus an archive built here on every run.
// tests/kernels/run.sh fetches the kernel and builds the binaries; see there
// for the environment variables that configure a run.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weirnet/weir/tests/kernels/internal/kmod"
)

// config is everything one run needs, from the command line.
type config struct {
	kernel       string
	kernelConfig string
	modulesDir   string
	modules      []string
	initBin      string
	tests        []testSpec
	tools        []toolSpec // static helper binaries, at /tools/NAME in the guest
	testArgs     []string
	testTimeout  time.Duration
	timeout      time.Duration
	qemu         string
	smp          int
	memory       string
	logPath      string
	workDir      string
	env          map[string]string
	cmdline      []string // extra kernel command-line options (-append)
	accel        string   // QEMU -accel value
}

// testSpec is one -test flag: NAME=BINARY[:PKGDIR].
type testSpec struct {
	name, binary, pkgDir string
}

type testFlags []testSpec

// toolSpec is one -tool flag: NAME=BINARY.
type toolSpec struct {
	name, binary string
}

type toolFlags []toolSpec

func (f *toolFlags) String() string { return fmt.Sprint(*f) }

func (f *toolFlags) Set(v string) error {
	name, bin, ok := strings.Cut(v, "=")
	if !ok || name == "" || bin == "" || strings.ContainsAny(name, "/ \t") {
		return fmt.Errorf("-tool %q: want NAME=BINARY, NAME without slashes", v)
	}
	*f = append(*f, toolSpec{name: name, binary: bin})
	return nil
}

// envFlags collects -env KEY=VALUE flags.
type envFlags map[string]string

func (e envFlags) String() string { return fmt.Sprint(map[string]string(e)) }

func (e envFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || strings.ContainsAny(k, " \t") {
		return fmt.Errorf("-env %q: want KEY=VALUE", v)
	}
	e[k] = val
	return nil
}

func (f *testFlags) String() string { return fmt.Sprint(*f) }

func (f *testFlags) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return fmt.Errorf("-test %q: want NAME=BINARY[:PKGDIR]", v)
	}
	bin, dir, _ := strings.Cut(rest, ":")
	*f = append(*f, testSpec{name: name, binary: bin, pkgDir: dir})
	return nil
}

func parseFlags(args []string) (*config, error) {
	c := config{env: map[string]string{}}
	var tests testFlags
	var tools toolFlags
	var modules, testArgs, cmdline string
	fs := flag.NewFlagSet("vmrun", flag.ContinueOnError)
	fs.StringVar(&c.kernel, "kernel", "", "kernel image (bzImage/vmlinuz) to boot")
	fs.StringVar(&c.kernelConfig, "kernel-config", "", "the kernel's config file; decides which hook tiers the guest tests must find (WEIR_KERNEL_EXPECT)")
	fs.StringVar(&c.modulesDir, "modules-dir", "", "directory holding the kernel's modules (lib/modules/<release>)")
	fs.StringVar(&modules, "modules", "", "space- or comma-separated modules to load in the guest, dependencies are added")
	fs.StringVar(&c.initBin, "init", "", "static guest init binary (go build ./tests/kernels/guestinit with CGO_ENABLED=0)")
	fs.Var(&tests, "test", "test binary to run in the guest, NAME=BINARY[:PKGDIR] (PKGDIR's testdata/ is copied); repeatable, run in order")
	fs.Var(&tools, "tool", "static helper binary the guest tests run, NAME=BINARY, packed as "+guestToolsDir+"/NAME; repeatable")
	fs.Var(envFlags(c.env), "env", "KEY=VALUE added to the test binaries' environment; repeatable")
	fs.StringVar(&cmdline, "append", "", "extra kernel command-line options, space-separated, after the harness's own (e.g. ignore_loglevel)")
	fs.StringVar(&testArgs, "test-args", "", "extra arguments for every test binary, space-separated (e.g. -test.short)")
	fs.DurationVar(&c.testTimeout, "test-timeout", 2*time.Minute, "per test binary: passed as -test.timeout; the guest kills the binary a little later")
	fs.DurationVar(&c.timeout, "timeout", 4*time.Minute, "whole VM run, enforced with timeout(1) around QEMU")
	fs.StringVar(&c.accel, "accel", defaultAccel, "QEMU -accel value; multi-threaded TCG (\"tcg\") is not the default: see defaultAccel")
	fs.StringVar(&c.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	fs.IntVar(&c.smp, "smp", 2, "guest CPUs")
	fs.StringVar(&c.memory, "memory", "1G", "guest memory (QEMU -m)")
	fs.StringVar(&c.logPath, "log", "", "file to write the raw serial console to (default: <work-dir>/serial.log)")
	fs.StringVar(&c.workDir, "work-dir", "", "directory for the initramfs (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.tests = tests
	c.tools = tools
	c.modules = strings.FieldsFunc(modules, func(r rune) bool { return r == ',' || r == ' ' })
	c.testArgs = strings.Fields(testArgs)
	c.cmdline = strings.Fields(cmdline)
	return &c, c.validate()
}

func (c *config) validate() error {
	if c.kernel == "" || c.initBin == "" {
		return errors.New("-kernel and -init are required")
	}
	if len(c.tests) == 0 {
		return errors.New("no -test given: nothing to run in the guest")
	}
	if len(c.modules) > 0 && c.modulesDir == "" {
		return errors.New("-modules needs -modules-dir")
	}
	if c.testTimeout <= 0 || c.timeout <= 0 {
		return errors.New("-test-timeout and -timeout must be positive")
	}
	if c.smp < 1 {
		return fmt.Errorf("-smp %d: need at least one CPU", c.smp)
	}
	inputs := []string{c.kernel, c.initBin}
	seen := map[string]bool{}
	for _, tl := range c.tools {
		if seen[tl.name] {
			return fmt.Errorf("-tool %s given twice", tl.name)
		}
		seen[tl.name] = true
		inputs = append(inputs, tl.binary)
	}
	for _, f := range inputs {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("checking input: %w", err)
		}
	}
	if c.kernelConfig != "" {
		if _, err := os.Stat(c.kernelConfig); err != nil {
			return fmt.Errorf("checking -kernel-config: %w", err)
		}
	}
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vmrun:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ok, err := run(ctx, log, c)
	stop()
	if err != nil {
		fmt.Println("kernels: FAIL:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// run prepares the guest, boots it and prints the summary. It returns false
// when the guest's tests failed and an error when the harness itself did.
func run(ctx context.Context, log *slog.Logger, c *config) (bool, error) {
	work := c.workDir
	if work == "" {
		dir, err := os.MkdirTemp("", "weir-vmrun-")
		if err != nil {
			return false, fmt.Errorf("creating work dir: %w", err)
		}
		defer os.RemoveAll(dir)
		work = dir
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return false, fmt.Errorf("creating work dir: %w", err)
	}
	logPath := c.logPath
	if logPath == "" {
		logPath = filepath.Join(work, "serial.log")
	}

	env := map[string]string{}
	for k, v := range c.env {
		env[k] = v
	}
	if c.kernelConfig != "" {
		kc, err := readKernelConfig(c.kernelConfig)
		if err != nil {
			return false, err
		}
		expect := kc.expectedFeatures()
		log.Info("hook tiers the guest must find, from the kernel config", "config", c.kernelConfig, "expect", strings.Join(expect, ","))
		env["WEIR_KERNEL_EXPECT"] = strings.Join(expect, ",")
	}

	var modules []string
	if len(c.modules) > 0 {
		idx, err := kmod.NewIndex(c.modulesDir)
		if err != nil {
			return false, err
		}
		if modules, err = idx.Resolve(c.modules...); err != nil {
			return false, err
		}
	}

	nonce, err := newNonce()
	if err != nil {
		return false, err
	}
	initramfs := filepath.Join(work, "initramfs.cpio.gz")
	start := time.Now()
	manifest, err := pack(initramfs, c, nonce, env, modules)
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(initramfs)
	if err != nil {
		return false, fmt.Errorf("checking initramfs: %w", err)
	}
	log.Info("initramfs packed", "path", initramfs, "bytes", fi.Size(), "modules", len(modules), "tests", len(manifest.Tests), "elapsed", time.Since(start).Round(time.Millisecond))

	col := newCollector(nonce)
	start = time.Now()
	status, err := boot(ctx, log, c, initramfs, logPath, col)
	if err != nil {
		return false, err
	}
	log.Info("guest finished", "elapsed", time.Since(start).Round(time.Millisecond), "serial_log", logPath)
	lines, ok := col.summary(manifest.Tests, status, c.timeout)
	for _, l := range lines {
		fmt.Println(l)
	}
	return ok, nil
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("creating nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}
