// Package ui tests Weir's dashboard in a real browser: headless Chromium
// (the Debian package) driven over the DevTools protocol by chromedp.
//
// Browser is exported so the demo suite can load the same views against a
// running demo; the tests in this package load them against canned API
// answers, which pins the rendering down independently of the pipeline.
package ui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/weirnet/weir/tests/harness"
)

// Bounds of one browser session.
const (
	// ViewTimeout bounds loading and rendering one view.
	ViewTimeout = 20 * time.Second
	// SessionTimeout bounds the whole browser session of one test.
	SessionTimeout = 3 * time.Minute
	// MaxConsoleErrors caps how many console errors are kept for a report.
	MaxConsoleErrors = 50
)

// Browser is one headless Chromium with one tab, a fresh profile, and the
// page's console errors collected.
type Browser struct {
	t      testing.TB
	ctx    context.Context
	outDir string

	mu       sync.Mutex
	errors   []string
	overflow int
}

// ChromiumPath finds the browser: $WEIR_CHROMIUM, else chromium on PATH.
// The test fails (not skips) without it: a UI test that did not run is
// not a passing UI test. CI installs it with `apt-get install chromium`.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WEIR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: install the Debian package (apt-get install -y chromium) or set WEIR_CHROMIUM")
	return ""
}

// ArtifactsDir is where screenshots go: $WEIR_ARTIFACTS_DIR/ui, defaulting
// to <repo>/tests/artifacts/ui (gitignored).
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("WEIR_ARTIFACTS_DIR")
	if base == "" {
		repo, err := harness.RepoRoot()
		if err != nil {
			t.Fatalf("locate repository root: %v", err)
		}
		base = filepath.Join(repo, "tests", "artifacts")
	}
	dir := filepath.Join(base, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return dir
}

// NewBrowser starts Chromium; it is stopped, and its profile removed, in
// t.Cleanup. Screenshots are written under ArtifactsDir(t).
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	exe := ChromiumPath(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1360, 900),
	}
	sessCtx, sessCancel := context.WithTimeout(context.Background(), SessionTimeout)
	allocCtx, allocCancel := chromedp.NewExecAllocator(sessCtx, opts...)
	b := &Browser{t: t, outDir: ArtifactsDir(t)}
	// The listener is given at creation so it sees the page's first events.
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.onEvent))
	b.ctx = ctx
	// Stop order: the tab, then the browser process (waited for by the
	// allocator, so no orphan is left for PID 1), then the session bound.
	t.Cleanup(func() { cancel(); allocCancel(); sessCancel() })
	// The first Do starts the browser; it must not carry a short timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	return b
}

// onEvent runs on the tab's reader goroutine: it only records.
func (b *Browser) onEvent(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, strings.Trim(string(a.Value), `"`))
				} else {
					parts = append(parts, a.Description)
				}
			}
			b.addError("console.error: " + strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		b.addError("uncaught: " + msg)
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			b.addError(fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (b *Browser) addError(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) >= MaxConsoleErrors {
		b.overflow++
		return
	}
	b.errors = append(b.errors, msg)
}

// ConsoleErrors returns the console errors and uncaught exceptions seen
// so far, and forgets them.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errors
	if b.overflow > 0 {
		out = append(out, fmt.Sprintf("... and %d more", b.overflow))
	}
	b.errors, b.overflow = nil, 0
	return out
}

// View loads url (the dashboard with a #/route), waits until the view
// named view has rendered at least once, and returns the visible text of
// the page's main area. ready, if not empty, is a CSS selector that must
// also be present (e.g. a table row the caller expects).
func (b *Browser) View(url, view, ready string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, ViewTimeout)
	defer cancel()
	sel := fmt.Sprintf(`#view[data-view=%q][data-loaded]`, view)
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel))}
	if ready != "" {
		steps = append(steps, chromedp.WaitReady(chromedp.CSS(ready)))
	}
	if err := chromedp.Do(ctx, steps...); err != nil {
		return "", fmt.Errorf("load %s (view %s, waiting for %q): %w", url, view, ready, err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#view")))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	return text, nil
}

// Count returns how many elements match the CSS selector on the page.
func (b *Browser) Count(selector string) (int, error) {
	ctx, cancel := context.WithTimeout(b.ctx, ViewTimeout)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", selector)))
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", selector, err)
	}
	return n, nil
}

// Screenshot saves the full page as <ArtifactsDir>/<name>.png and returns
// the path.
func (b *Browser) Screenshot(name string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, ViewTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	path := filepath.Join(b.outDir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	return path, nil
}
