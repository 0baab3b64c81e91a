package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/kernels/internal/guestproto"
)

const nonce = "feedface"

func marker(kind string, kv ...string) string {
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return guestproto.Format(nonce, guestproto.Marker{Kind: kind, Fields: f})
}

func manifestTests(names ...string) []guestproto.Test {
	var ts []guestproto.Test
	for _, n := range names {
		ts = append(ts, guestproto.Test{Name: n})
	}
	return ts
}

func end(name, exit, passed, failed, skipped string, extra ...string) string {
	return marker(guestproto.KindEnd, append([]string{"name", name, "exit", exit, "passed", passed, "failed", failed, "skipped", skipped, "seconds", "1.00"}, extra...)...)
}

func TestSummaryVerdicts(t *testing.T) {
	info := marker(guestproto.KindInfo, "release", "6.1.0-56-cloud-amd64")
	tests := []struct {
		name     string
		lines    []string
		tests    []string
		status   qemuStatus
		ok       bool
		contains []string
	}{
		{
			name:  "all pass",
			tests: []string{"selftest", "bpf"},
			lines: []string{info, end("selftest", "0", "4", "0", "0"), "    x_test.go:1: weir-kernel-report: btf=yes kprobe=yes fentry=yes",
				end("bpf", "0", "7", "0", "1"), marker(guestproto.KindDone, "exit", "0")},
			status: qemuStatus{exitCode: 1},
			ok:     true,
			contains: []string{
				"kernels: 6.1.0-56-cloud-amd64: selftest ok (4 tests, 1.00s), bpf ok (7 tests, 1 skipped, 1.00s)",
				"kernels: 6.1.0-56-cloud-amd64: btf=yes kprobe=yes fentry=yes",
				"kernels: 11 passed, 0 failed, 1 skipped",
			},
		},
		{
			name:     "failing test",
			tests:    []string{"bpf"},
			lines:    []string{info, end("bpf", "1", "2", "1", "0"), marker(guestproto.KindDone, "exit", "1")},
			status:   qemuStatus{exitCode: 3},
			contains: []string{"bpf FAILED (2 passed, 1 failed)", "FAIL: bpf: exit status 1", "kernels: 2 passed, 1 failed"},
		},
		{
			name:     "binary crashed before any result",
			tests:    []string{"bpf"},
			lines:    []string{info, end("bpf", "2", "0", "0", "0"), marker(guestproto.KindDone, "exit", "1")},
			status:   qemuStatus{exitCode: 3},
			contains: []string{"FAIL: bpf: exit status 2", "kernels: 0 passed, 1 failed"},
		},
		{
			name:     "killed by the guest",
			tests:    []string{"bpf"},
			lines:    []string{info, end("bpf", "-1", "1", "0", "0", "timeout", "true", "msg", "killed after 2m"), marker(guestproto.KindDone, "exit", "1")},
			status:   qemuStatus{exitCode: 3},
			contains: []string{"bpf TIMEOUT", "FAIL: bpf: killed after 1.00 s: killed after 2m"},
		},
		{
			name:     "no tests ran",
			tests:    []string{"bpf"},
			lines:    []string{info, end("bpf", "0", "0", "0", "3"), marker(guestproto.KindDone, "exit", "0")},
			status:   qemuStatus{exitCode: 1},
			contains: []string{"bpf ran no tests", "FAIL: bpf: ran no tests (3 skipped)"},
		},
		{
			name:     "kernel panic: no markers",
			tests:    []string{"selftest"},
			lines:    []string{"Kernel panic - not syncing: Attempted to kill init!"},
			status:   qemuStatus{exitCode: 0},
			contains: []string{"unknown kernel: selftest no result", "FAIL: no completion marker", "kernels: 0 passed, 1 failed"},
		},
		{
			name:     "qemu timeout",
			tests:    []string{"selftest"},
			lines:    []string{info, marker(guestproto.KindBegin, "name", "selftest")},
			status:   qemuStatus{exitCode: timeoutStatus, timedOut: true},
			contains: []string{"FAIL: selftest: no result", "FAIL: QEMU timed out after 3m0s"},
		},
		{
			name:     "debug exit disagrees",
			tests:    []string{"selftest"},
			lines:    []string{info, end("selftest", "0", "1", "0", "0"), marker(guestproto.KindDone, "exit", "0")},
			status:   qemuStatus{exitCode: 0},
			contains: []string{"FAIL: guest reported exit 0 but QEMU exited 0, not 1"},
		},
		{
			name:     "guest setup error",
			tests:    []string{"selftest"},
			lines:    []string{marker(guestproto.KindError, "msg", "loading module veth.ko: exec format error"), marker(guestproto.KindDone, "exit", "2")},
			status:   qemuStatus{exitCode: 5},
			contains: []string{"FAIL: guest: loading module veth.ko: exec format error", "FAIL: selftest: no result"},
		},
		{
			name:  "forged marker of another run is ignored",
			tests: []string{"selftest"},
			lines: []string{info, end("selftest", "1", "0", "1", "0"),
				strings.ReplaceAll(marker(guestproto.KindDone, "exit", "0"), nonce, "0ther"), marker(guestproto.KindDone, "exit", "1")},
			status:   qemuStatus{exitCode: 3},
			contains: []string{"FAIL: selftest: exit status 1"},
		},
		{
			name:     "malformed marker",
			tests:    []string{"selftest"},
			lines:    []string{info, end("selftest", "0", "1", "0", "0"), "WEIR-KERNELS:" + nonce + " done exit=zero"},
			status:   qemuStatus{exitCode: 1},
			contains: []string{`FAIL: malformed marker: done marker field exit="zero" is not an integer`, "FAIL: no completion marker"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector(nonce)
			for _, l := range tt.lines {
				c.observe(l)
			}
			lines, ok := c.summary(manifestTests(tt.tests...), tt.status, 3*time.Minute)
			out := strings.Join(lines, "\n")
			if ok != tt.ok {
				t.Errorf("verdict ok=%v; want %v\n%s", ok, tt.ok, out)
			}
			for _, want := range tt.contains {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "kernels: ") || !strings.Contains(last, " passed, ") {
				t.Errorf("last summary line %q is not the 'N passed, N failed' closing line", last)
			}
		})
	}
}

func TestExpectedFeaturesFollowKernelConfig(t *testing.T) {
	tests := []struct {
		config string
		want   string
	}{
		{"CONFIG_DEBUG_INFO_BTF=y\nCONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_BPF_JIT=y\nCONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y\n", "btf,kprobe,fentry"},
		{"CONFIG_DEBUG_INFO_BTF=y\n# CONFIG_KPROBES is not set\nCONFIG_BPF_JIT=y\n", "btf"},
		{"CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_BPF_JIT=y\nCONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y\n", "kprobe"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(path, []byte(tt.config), 0o644); err != nil {
			t.Fatal(err)
		}
		kc, err := readKernelConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(kc.expectedFeatures(), ","); got != tt.want {
			t.Errorf("expected features for\n%s= %q; want %q", tt.config, got, tt.want)
		}
	}
	empty := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(empty, []byte("# nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readKernelConfig(empty); err == nil || !strings.Contains(err.Error(), "no CONFIG_ options") {
		t.Errorf("readKernelConfig(no options) = %v; want an error saying so", err)
	}
}

func TestReadLinesStripsCRAndCutsLongLines(t *testing.T) {
	in := "first\r\nsecond\n" + strings.Repeat("x", maxLineBytes+100) + "\nlast"
	var got []string
	readLines(strings.NewReader(in), func(l string) { got = append(got, l) })
	if len(got) != 4 || got[0] != "first" || got[1] != "second" || got[3] != "last" {
		t.Fatalf("lines = %q (%d); want first, second, <cut>, last", got[:min(2, len(got))], len(got))
	}
	if !strings.HasSuffix(got[2], "[line cut at 65536 bytes]") || len(got[2]) > maxLineBytes+64 {
		t.Errorf("long line not cut and marked: len %d, suffix %q", len(got[2]), got[2][len(got[2])-30:])
	}
}

func TestTerminalSafeRemovesControlSequences(t *testing.T) {
	in := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\x07 ok\tdone\x7f"
	if got, want := terminalSafe(in), "SeaBIOS ok\tdone"; got != want {
		t.Errorf("terminalSafe(%q) = %q; want %q", in, got, want)
	}
}

func TestParseFlagsRejectsIncompleteRuns(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-init", f, "-test", "a=" + f}, "-kernel and -init are required"},
		{[]string{"-kernel", f, "-init", f}, "no -test given"},
		{[]string{"-kernel", f, "-init", f, "-test", "nobinary"}, "want NAME=BINARY"},
		{[]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-modules", "veth"}, "-modules needs -modules-dir"},
		{[]string{"-kernel", filepath.Join(dir, "missing"), "-init", f, "-test", "a=" + f}, "missing"},
		{[]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-env", "=x"}, "want KEY=VALUE"},
		{[]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-tool", "a/b=" + f}, "want NAME=BINARY"},
		{[]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-tool", "peer"}, "want NAME=BINARY"},
		{[]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-smp", "0"}, "at least one CPU"},
	}
	for _, tt := range tests {
		if _, err := parseFlags(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) = %v; want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// The guest runs on single-threaded TCG unless told otherwise (multi-threaded
// TCG livelocks on stale patched kernel text, see defaultAccel), and -append
// adds to the harness's kernel command line instead of replacing it.
func TestQEMUArgsDefaultToSingleThreadTCGAndAppendCmdline(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	arg := func(args []string, flag string) string {
		for i := range args[:len(args)-1] {
			if args[i] == flag {
				return args[i+1]
			}
		}
		t.Fatalf("no %s in %q", flag, args)
		return ""
	}
	c, err := parseFlags([]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-append", "ignore_loglevel  nokaslr"})
	if err != nil {
		t.Fatal(err)
	}
	args := qemuArgs(c, "initrd")
	if got := arg(args, "-accel"); got != "tcg,thread=single" {
		t.Errorf("-accel %q by default; want tcg,thread=single", got)
	}
	if got, want := arg(args, "-append"), kernelCmdline+" ignore_loglevel nokaslr"; got != want {
		t.Errorf("-append %q; want %q", got, want)
	}
	for _, opt := range []string{"softlockup_all_cpu_backtrace=1", "softlockup_panic=1", "rdinit=/init"} {
		if !strings.Contains(arg(args, "-append"), opt) {
			t.Errorf("kernel command line %q lacks %s", arg(args, "-append"), opt)
		}
	}

	c, err = parseFlags([]string{"-kernel", f, "-init", f, "-test", "a=" + f, "-accel", "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	if got := arg(qemuArgs(c, "initrd"), "-accel"); got != "tcg" {
		t.Errorf("-accel %q with -accel tcg; want tcg", got)
	}
}

func TestCheckStaticRejectsDynamicBinaries(t *testing.T) {
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("checkStatic(/bin/sh) = %v; want a dynamically-linked error", err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(notELF); err == nil {
		t.Error("checkStatic accepted a shell script")
	}
}

// TestPackLaysOutTheGuest packs a real static binary and checks the archive
// with cpio(1): init, console node, manifest, test binary and testdata.
func TestPackLaysOutTheGuest(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("cpio(1) is needed to read the archive back: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "testdata", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"go.mod":              "module hello\n",
		"main.go":             "package main\nfunc main() {}\n",
		"testdata/sub/x.json": `{"x":1}`,
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static test binary: %v\n%s", err, out)
	}

	c := &config{initBin: bin, tests: []testSpec{{name: "hello", binary: bin, pkgDir: src}},
		tools:    []toolSpec{{name: "peer", binary: bin}},
		testArgs: []string{"-test.short"}, testTimeout: time.Minute}
	archive := filepath.Join(dir, "initramfs.cpio.gz")
	m, err := pack(archive, c, nonce, map[string]string{"WEIR_KERNEL_EXPECT": "btf"}, nil)
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	if got := m.Tests[0]; got.Path != "/tests/hello/hello.test" || got.Dir != "/tests/hello" ||
		strings.Join(got.Args, " ") != "-test.v -test.count=1 -test.timeout=1m0s -test.short" ||
		time.Duration(got.Timeout) != time.Minute+killMargin {
		t.Errorf("manifest test = %+v", got)
	}

	gzData, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gzData))
	if err != nil {
		t.Fatalf("initramfs is not gzip: %v", err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-i", "--make-directories", "--quiet")
	cmd.Dir, cmd.Stdin = out, zr
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	for _, p := range []string{"init", "tests/hello/hello.test", "tests/hello/testdata/sub/x.json", "tools/peer", "tmp", "proc", "sys"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("archive lacks %s: %v", p, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "dev/console")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("dev/console = %v, %v; want a character device", fi, err)
	}
	got, err := guestproto.ReadManifest(filepath.Join(out, guestproto.ManifestPath))
	if err != nil {
		t.Fatalf("manifest in archive: %v", err)
	}
	if got.Nonce != nonce || got.Env["WEIR_KERNEL_EXPECT"] != "btf" || len(got.Tests) != 1 {
		t.Errorf("manifest in archive = %+v", got)
	}
}
