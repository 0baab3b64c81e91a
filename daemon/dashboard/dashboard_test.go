package dashboard

import (
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/registry"
)

type noPods struct{}

func (noPods) List() []*registry.Pod { return nil }

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestRootServesTheEmbeddedPage(t *testing.T) {
	resp := get(t, Handler(), "/")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type %q, want text/html", ct)
	}
	if !strings.Contains(string(body), `<script type="module" src="ui/app.js">`) {
		t.Errorf("GET / does not load ui/app.js:\n%s", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache so a daemon upgrade is not hidden by a stale script", cc)
	}
}

func TestAssetsAreServedWithTheirTypes(t *testing.T) {
	for path, want := range map[string]string{
		"/ui/app.js":    "text/javascript",
		"/ui/style.css": "text/css",
	} {
		resp := get(t, Handler(), path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) {
			t.Errorf("GET %s: Content-Type %q, want %s (browsers refuse modules served otherwise)", path, ct, want)
		}
	}
}

func TestUnknownPathsAndTheAssetDirectoryAre404(t *testing.T) {
	for _, path := range []string{"/ui/", "/ui/nope.js", "/index.html.bak", "/ui/../go.mod"} {
		if resp := get(t, Handler(), path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
}

func TestRegisterHTTPLeavesAPIPathsToTheAPI(t *testing.T) {
	srv := api.New(noPods{}, slog.New(slog.DiscardHandler))
	New().RegisterHTTP(srv)
	if resp := get(t, srv, "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / through the API server: %s", resp.Status)
	}
	resp := get(t, srv, "/api/v1/pods")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Errorf("GET /api/v1/pods: %s %q, want the API's JSON", resp.Status, ct)
	}
	resp = get(t, srv, "/api/v1/no-such-thing")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "<html") {
		t.Errorf("GET /api/v1/no-such-thing: %s %q, want a plain 404, not the dashboard page", resp.Status, body)
	}
}

// A module graph typo only shows in a browser; catch it here too: every
// relative import of every module must name an embedded file.
func TestEveryModuleImportResolvesToAnEmbeddedFile(t *testing.T) {
	importRe := regexp.MustCompile(`(?m)^import .* from "\./([^"]+)";`)
	mods, err := fs.Glob(files, "ui/*.js")
	if err != nil || len(mods) == 0 {
		t.Fatalf("no embedded modules: %v", err)
	}
	imports := 0
	for _, m := range mods {
		src, err := fs.ReadFile(files, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range importRe.FindAllStringSubmatch(string(src), -1) {
			imports++
			if _, err := fs.Stat(files, "ui/"+imp[1]); err != nil {
				t.Errorf("%s imports ./%s, which is not embedded", m, imp[1])
			}
		}
	}
	if imports < 4 {
		t.Errorf("found %d relative imports; the pattern no longer matches the modules' import lines", imports)
	}
}
