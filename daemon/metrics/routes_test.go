package metrics

import "testing"

func TestRouteMatching(t *testing.T) {
	routes, err := compileRoutes([]string{"/api/items/{id}", "/api/items/{id}/reviews", "/files/{path...}", "/", "/users/"})
	if err != nil {
		t.Fatal(err)
	}
	match := func(p string) string {
		for i := range routes {
			if routes[i].match(p) {
				return routes[i].pattern
			}
		}
		return ""
	}
	for path, want := range map[string]string{
		"/api/items/42":         "/api/items/{id}",
		"/api/items/42/reviews": "/api/items/{id}/reviews",
		"/api/items/":           "",
		"/api/items":            "",
		"/api/items/42/":        "",
		"/api/items/42/x":       "",
		"/files/a/b/c.txt":      "/files/{path...}",
		"/files/":               "",
		"/files":                "",
		"/":                     "/",
		"/users/":               "/users/",
		"/users":                "",
		"api/items/1":           "",
	} {
		if got := match(path); got != want {
			t.Errorf("%q matched %q, want %q", path, got, want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/a?b=1": "/a", "/a#frag": "/a", "": "/", "?x": "/", "/abcdef": "/abc",
	} {
		if got := cleanPath(in, 4); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteMatchDoesNotAllocate(t *testing.T) {
	routes, _ := compileRoutes([]string{"/api/items/{id}/reviews/{rid}"})
	if n := testing.AllocsPerRun(100, func() { routes[0].match("/api/items/1/reviews/2") }); n != 0 {
		t.Fatalf("match allocates %v times", n)
	}
}
