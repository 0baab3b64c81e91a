package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
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

// TempPattern picks a fresh random temporary name in final's directory
// (concurrent writers never share one) and leaves nothing behind.
func TestTempPatternWritesThroughAFreshNameAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "10-net.conflist")
	var seen []string
	err := Write(final, []byte("new"), Options{
		TempPattern: ".w-*.tmp",
		BeforeRename: func() error {
			seen, _ = filepath.Glob(filepath.Join(dir, ".w-*.tmp"))
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 {
		t.Fatalf("temporary files matching the pattern before the rename: %v, want one", seen)
	}
	if got, _ := os.ReadFile(final); string(got) != "new" {
		t.Fatalf("final = %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".w-*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// Like copies the replaced file's permission bits exactly, including bits
// the umask would have cleared (group write here), and its owner.
// Changing the owner needs root; that half runs as root only (CI is root).
func TestLikeKeepsTheReplacedFilesModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "10-net.conflist")
	if err := os.WriteFile(final, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(final, 0o664); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(final, 4321, 8765); err != nil {
			t.Fatal(err)
		}
	}
	like, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(final, []byte("new"), Options{TempPattern: ".w-*.tmp", Like: like}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o664 {
		t.Errorf("mode %v, want 0664", fi.Mode().Perm())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if root && (st.Uid != 4321 || st.Gid != 8765) {
		t.Errorf("owner %d:%d, want 4321:8765", st.Uid, st.Gid)
	}
	if !root {
		t.Log("not root: owner preservation not checked (needs CAP_CHOWN)")
	}
}
