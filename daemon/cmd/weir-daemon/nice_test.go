package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// niceEnv makes the test binary a process that sets its nice value with
// setNice, then makes new threads, and prints the nice value of every
// thread it has before and after.
const niceEnv = "WEIR_DAEMON_TEST_NICE"

func init() {
	v := os.Getenv(niceEnv)
	if v == "" {
		return
	}
	nice, err := strconv.Atoi(v)
	if err == nil {
		err = niceChild(nice)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func niceChild(nice int) error {
	if err := setNice(nice); err != nil {
		return err
	}
	before, err := threadNices()
	if err != nil {
		return err
	}
	// Threads the runtime makes after setNice: goroutines locked to
	// their threads and all blocked at once need a thread each.
	var started, release sync.WaitGroup
	release.Add(1)
	for range 8 {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	after, err := threadNices()
	release.Done()
	if err != nil {
		return err
	}
	fmt.Println(len(before), len(after), strings.Join(after, " "))
	return nil
}

// threadNices returns the nice value of every thread of the process, as
// /proc says it.
func threadNices() ([]string, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/stat")
		if err != nil {
			continue // exited
		}
		// Fields after the command's closing parenthesis start at the
		// third; nice is the nineteenth.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 17 {
			return nil, fmt.Errorf("thread %s: short stat %q", e.Name(), b)
		}
		out = append(out, f[16])
	}
	return out, nil
}

// The nice setting reaches every thread of the daemon, those the Go
// runtime starts later included: a nice value is a thread's on Linux.
func TestSetNiceReachesEveryThreadIncludingLaterOnes(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), niceEnv+"=7")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("child said %q", out)
	}
	before, _ := strconv.Atoi(f[0])
	after, _ := strconv.Atoi(f[1])
	// Eight goroutines locked and blocked at once need eight threads
	// besides the test's own; idle threads that existed before may take
	// some of them, so only "some new" is certain.
	if after <= before {
		t.Errorf("%d threads after locking 8 goroutines, %d before: no new threads to check", after, before)
	}
	for i, n := range f[2:] {
		if n != "7" {
			t.Errorf("thread %d of %d has nice %s, want 7 (all: %v)", i, after, n, f[2:])
		}
	}
}
