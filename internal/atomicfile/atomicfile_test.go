package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesContentWhole(t *testing.T) {
	final := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(final, []byte("new content"), Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(final)
	if err != nil || string(got) != "new content" {
		t.Fatalf("final = %q, %v", got, err)
	}
	if _, err := os.Stat(final + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if fi, _ := os.Stat(final); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// A crash between the durable temporary file and the rename leaves the old
// content in place; the abandoned write removes its temporary file.
func TestFailureBeforeRenameLeavesTheOldFile(t *testing.T) {
	final := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	err := Write(final, []byte("new"), Options{BeforeRename: func() error { return crash }})
	if !errors.Is(err, crash) {
		t.Fatalf("err = %v, want the BeforeRename error", err)
	}
	if got, _ := os.ReadFile(final); string(got) != "old" {
		t.Fatalf("final = %q after an abandoned write, want old", got)
	}
	if _, err := os.Stat(final + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestExclusiveRefusesAnExistingTempFile(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".tmp-1")
	if err := os.WriteFile(tmp, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "rec"), []byte("x"), Options{Temp: tmp, Exclusive: true}); err == nil {
		t.Fatal("wrote over another writer's temporary file")
	}
	if got, _ := os.ReadFile(tmp); string(got) != "someone else's" {
		t.Fatalf("the other temporary file was changed or removed: %q", got)
	}
}
