package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// kernelConfig holds the options of a kernel's build config (/boot/config-*).
type kernelConfig map[string]string

func readKernelConfig(path string) (kernelConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading kernel config: %w", err)
	}
	defer f.Close()
	kc := kernelConfig{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "CONFIG_") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			kc[k] = strings.Trim(v, `"`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kernel config %s: %w", path, err)
	}
	if len(kc) == 0 {
		return nil, fmt.Errorf("kernel config %s has no CONFIG_ options", path)
	}
	return kc, nil
}

func (kc kernelConfig) enabled(opts ...string) bool {
	for _, o := range opts {
		if kc[o] != "y" {
			return false
		}
	}
	return true
}

// expectedFeatures names the hook tiers a guest running this kernel must be
// able to use, so that the self-test fails rather than shrugs when, say,
// fentry stops attaching on a kernel that was built for it.
//   - btf: kernel BTF, needed for CO-RE and tp_btf.
//   - kprobe: kprobes through the perf/tracefs kprobe interface.
//   - fentry: BPF trampolines, which need BTF, the JIT and ftrace direct calls.
func (kc kernelConfig) expectedFeatures() []string {
	var f []string
	if kc.enabled("CONFIG_DEBUG_INFO_BTF") {
		f = append(f, "btf")
	}
	if kc.enabled("CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS") {
		f = append(f, "kprobe")
	}
	if kc.enabled("CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_JIT", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS") {
		f = append(f, "fentry")
	}
	return f
}
