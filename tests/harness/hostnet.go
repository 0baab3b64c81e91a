package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// PreserveSysctl records a sysctl (dotted name, e.g. "net.ipv4.ip_forward")
// and restores it in t.Cleanup. The bridge plugin turns on IP forwarding for
// gateway bridges and never turns it off again.
func PreserveSysctl(t testing.TB, name string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read sysctl %s: %v", name, err)
	}
	t.Cleanup(func() {
		cur, err := os.ReadFile(path)
		if err == nil && bytes.Equal(cur, orig) {
			return
		}
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Errorf("restore sysctl %s to %q: %v", name, strings.TrimSpace(string(orig)), err)
		}
	})
}

// DeleteLinkOnCleanup removes a host link (a bridge the plugin created) when
// the test ends; a link that is already gone is fine.
func DeleteLinkOnCleanup(t testing.TB, name string) {
	t.Helper()
	t.Cleanup(func() {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return // never created, or already removed
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("delete link %s: %v", name, err)
		}
	})
}

// iptablesTables are the tables CNI plugins write to.
var iptablesTables = []string{"nat", "filter", "mangle"}

// GuardIPTables snapshots the iptables chains that exist now and, in
// t.Cleanup, removes every chain whose name starts with one of prefixes and
// that the test created (plus the rules jumping to it). portmap leaves its
// CNI-HOSTPORT-* chains behind after the last DEL and bridge's ipMasq leaves
// CNI-* chains on failures; chains that existed before the test belong to
// someone else and are never touched.
func GuardIPTables(t testing.TB, prefixes ...string) {
	t.Helper()
	if len(prefixes) == 0 {
		prefixes = []string{"CNI-"}
	}
	before := map[string]map[string]bool{}
	for _, table := range iptablesTables {
		chains, _, err := iptablesChains(table)
		if err != nil {
			t.Fatalf("snapshot iptables: %v", err)
		}
		before[table] = chains
	}
	t.Cleanup(func() {
		for _, table := range iptablesTables {
			if err := removeNewChains(table, before[table], prefixes); err != nil {
				t.Errorf("clean iptables %s table: %v", table, err)
			}
		}
	})
}

// IPTablesChains returns the names of the chains of an iptables table, for
// tests that check a program removed the chains it created.
func IPTablesChains(table string) (map[string]bool, error) {
	chains, _, err := iptablesChains(table)
	return chains, err
}

// iptablesChains lists the chains of a table and its rules in -S form.
func iptablesChains(table string) (map[string]bool, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, "iptables", "-w", "5", "-t", table, "-S")
	if err != nil {
		return nil, nil, err
	}
	chains := map[string]bool{}
	var rules []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && (f[0] == "-N" || f[0] == "-P"):
			chains[f[1]] = true
		case len(f) >= 2 && f[0] == "-A":
			rules = append(rules, sc.Text())
		}
	}
	return chains, rules, sc.Err()
}

func removeNewChains(table string, before map[string]bool, prefixes []string) error {
	chains, rules, err := iptablesChains(table)
	if err != nil {
		return err
	}
	doomed := map[string]bool{}
	for c := range chains {
		if before[c] {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				doomed[c] = true
			}
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Remove jumps into doomed chains from chains that survive (by rule
	// number, highest first, because -S output quotes comments in a way that
	// does not round-trip through argv), then flush and delete the chains.
	numbers := map[string][]int{}
	seen := map[string]int{}
	for _, r := range rules {
		f := strings.Fields(r)
		seen[f[1]]++
		if !doomed[f[1]] && jumpsTo(f, doomed) {
			numbers[f[1]] = append(numbers[f[1]], seen[f[1]])
		}
	}
	for chain, nums := range numbers {
		for i := len(nums) - 1; i >= 0; i-- {
			if _, err := run(ctx, "iptables", "-w", "5", "-t", table, "-D", chain, fmt.Sprint(nums[i])); err != nil {
				return err
			}
		}
	}
	for c := range doomed {
		if _, err := run(ctx, "iptables", "-w", "5", "-t", table, "-F", c); err != nil {
			return err
		}
	}
	for c := range doomed {
		if _, err := run(ctx, "iptables", "-w", "5", "-t", table, "-X", c); err != nil {
			return fmt.Errorf("delete chain %s: %w", c, err)
		}
	}
	return nil
}

func jumpsTo(fields []string, chains map[string]bool) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && chains[fields[i+1]] {
			return true
		}
	}
	return false
}
