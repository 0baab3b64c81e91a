package bpf

import (
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/weirnet/weir/bpf/gotls"
)

// TLS is the TLS program set (c/tls.bpf.c): uprobes on OpenSSL's
// SSL_write[_ex] and SSL_read[_ex] (Acquire), and on Go crypto/tls's
// (*Conn).Write and (*Conn).Read in Go binaries (AcquireGo, see
// package gotls), that report each call's plaintext as Data events of the TCP
// connection underneath (event.SysSSLWrite/SysSSLRead,
// event.SysGoTLSWrite/SysGoTLSRead), with the same walker, typed skips and
// budget as socket data. The plaintext is joined to the TCP connection the
// calling thread (or goroutine) moves bytes on inside the call, as the
// capture tier names it: under the socket tier by the socket's cookie, seen
// by tracepoints on the socket ops; under the syscall tier by (process, fd),
// from the thread's in-flight read or write syscall.
//
// Uprobes are attached per library file (device and inode), not per
// process: one attachment covers every process that maps the file, from its
// first instruction, whenever it starts. That is the gate that makes the
// first request of a short-lived client visible: the file is probed before
// the process exists (see Acquire). Processes outside enrolled network
// namespaces that map a probed file pay the uprobe trap and one map lookup.
type TLS struct {
	log  *slog.Logger
	coll *ebpf.Collection
	// linkHooks are the capture tier's programs that link calls to
	// connections (tlsSockHooks or tlsSysHooks).
	linkHooks []link.Link

	mu    sync.Mutex
	files map[fileID]*tlsFile
}

// fileID is a library file's identity: what a uprobe is attached to.
type fileID struct{ dev, ino uint64 }

type tlsFile struct {
	path    string
	library string   // "openssl", "boringssl", "go"
	symbols []string // functions probed
	links   []link.Link
	users   map[string]struct{}
}

// TLSLibrary is one probed library file.
type TLSLibrary struct {
	Path    string   `json:"path"`
	Library string   `json:"library"` // "openssl", "boringssl", "go"
	Device  uint64   `json:"device"`
	Inode   uint64   `json:"inode"`
	Symbols []string `json:"symbols"` // functions probed
	Users   []string `json:"users"`   // owners that acquired it (pods)
}

// tlsSymbols are the OpenSSL functions probed, entry and return. The _ex
// variants exist from OpenSSL 1.1.1; SSL_write and SSL_read everywhere.
var tlsSymbols = []struct {
	sym, enter, exit string
	required         bool
}{
	{"SSL_write", "ssl_write_enter", "ssl_write_exit", true},
	{"SSL_read", "ssl_read_enter", "ssl_read_exit", true},
	{"SSL_write_ex", "ssl_write_ex_enter", "ssl_write_ex_exit", false},
	{"SSL_read_ex", "ssl_read_ex_enter", "ssl_read_ex_exit", false},
}

// tlsHook is one attachment of a TLS-set program that links calls to
// connections: a tp_btf program (event empty), or a program on the
// syscalls tracepoint event.
type tlsHook struct{ prog, event string }

// tlsSockHooks link calls to connections under the socket capture tier,
// tlsSysHooks under the syscall tier: one program on the sys_enter
// tracepoints of the syscalls a TLS library moves records with (see
// tls_sys_enter). Each tier's are loaded and attached only with that tier:
// the other's hooks may not exist on the kernel.
var (
	tlsSockHooks = []tlsHook{{"tls_sock_send", ""}, {"tls_sock_recv", ""}, {"tls_sock_state", ""}}
	tlsSysHooks  = []tlsHook{{"tls_sys_enter", "sys_enter_read"}, {"tls_sys_enter", "sys_enter_write"},
		{"tls_sys_enter", "sys_enter_readv"}, {"tls_sys_enter", "sys_enter_writev"},
		{"tls_sys_enter", "sys_enter_recvfrom"}, {"tls_sys_enter", "sys_enter_sendto"},
		{"tls_sys_enter", "sys_enter_recvmsg"}, {"tls_sys_enter", "sys_enter_sendmsg"}}
)

// LoadTLS loads the TLS program set with the capture collection's maps and
// attaches the hooks that link calls to connections under the collector's
// capture tier. No library is probed until Acquire.
func (c *Collector) LoadTLS(log *slog.Logger) (*TLS, error) {
	spec, err := loadTls()
	if err != nil {
		return nil, fmt.Errorf("read embedded TLS object: %w", err)
	}
	hooks, other := tlsSockHooks, tlsSysHooks
	if c.features.Capture != CaptureSocket {
		hooks, other = tlsSysHooks, tlsSockHooks
	}
	// The object holds the capture core it includes: only the programs
	// defined in tls.bpf.c are loaded, and of the linking hooks only the
	// capture tier's.
	for name := range spec.Programs {
		if !strings.HasPrefix(name, "ssl_") && !strings.HasPrefix(name, "tls_") && !strings.HasPrefix(name, "go_tls_") ||
			slices.ContainsFunc(other, func(h tlsHook) bool { return h.prog == name }) {
			delete(spec.Programs, name)
		}
	}
	// Every map the capture collection has is shared, so both sets see
	// one connection table, ring buffer, scratch and set of counters.
	repl := make(map[string]*ebpf.Map)
	for name, ms := range spec.Maps {
		if name == ".rodata" || strings.HasPrefix(name, ".rodata.") {
			continue // constants: set below to the capture's values
		}
		m := c.coll.Maps[name]
		if m == nil {
			continue
		}
		ms.MaxEntries = m.MaxEntries()
		repl[name] = m
	}
	if err := c.setCaptureVariables(spec); err != nil {
		return nil, err
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: repl,
		Programs:        ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		return nil, permissionError("load TLS programs", err)
	}
	t := &TLS{log: log, coll: coll, files: make(map[fileID]*tlsFile)}
	for _, h := range hooks {
		prog := coll.Programs[h.prog]
		var l link.Link
		if h.event != "" {
			// Attached after the capture core's program on the
			// same tracepoint, which fills the slot this one reads.
			l, err = link.Tracepoint("syscalls", h.event, prog, nil)
		} else {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		}
		if err != nil {
			t.Close()
			return nil, permissionError("attach "+h.prog+" "+h.event, err)
		}
		t.linkHooks = append(t.linkHooks, l)
	}
	return t, nil
}

// setCaptureVariables gives spec (an object including the capture core)
// the constants the capture collection was loaded with, so the shared
// report_data makes the same decisions in both. All but socket_tier, set
// under either tier: report_data then claims per-operation kernel metrics
// only for an op window (syscall_args.window), which a TLS call never has:
// plaintext carries no packet metrics, they belong to the ciphertext.
func (c *Collector) setCaptureVariables(spec *ebpf.CollectionSpec) error {
	limit := c.cfg.CaptureLimit
	if limit == NoCaptureLimit {
		limit = 0
	}
	payload := uint32(1)
	if c.cfg.NoPayload {
		payload = 0
	}
	sets := []struct {
		name string
		v    any
	}{
		{"chunk_size", uint32(c.cfg.ChunkSize)},
		{"capture_limit", limit},
		{"max_frame_copy", uint32(c.cfg.MaxFrameCopy)},
		{"capture_payload", payload},
		{"socket_tier", uint8(1)},
	}
	for _, s := range sets {
		v := spec.Variables[s.name]
		if v == nil {
			return fmt.Errorf("TLS object: variable %s missing", s.name)
		}
		if err := v.Set(s.v); err != nil {
			return fmt.Errorf("TLS object: set %s: %w", s.name, err)
		}
	}
	return nil
}

// Acquire probes the OpenSSL or BoringSSL libssl at path for owner (a pod) unless its
// file is probed already, in which case owner is added to its users. It
// returns whether this call attached the probes.
func (t *TLS) Acquire(owner, path string) (bool, error) {
	id, err := statFile(path)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.files[id]; f != nil {
		f.users[owner] = struct{}{}
		return false, nil
	}
	links, lib, syms, err := t.attachFile(path)
	if err != nil {
		return false, err
	}
	t.files[id] = &tlsFile{path: path, library: lib, symbols: syms, links: links,
		users: map[string]struct{}{owner: {}}}
	t.log.Info("TLS library probed", "path", path, "library", lib, "device", id.dev, "inode", id.ino,
		"uprobes", len(links))
	return true, nil
}

// AcquireGo probes crypto/tls in the Go binary at path for owner, as
// Acquire does a libssl. It returns gotls.ErrNotGoTLS, which callers ignore, for
// a file that is not a Go binary with crypto/tls, and an error naming the
// problem for one that cannot be probed (report it: its plaintext is
// missed).
// name is the path the file is listed under (path may be /proc/PID/exe).
func (t *TLS) AcquireGo(owner, path, name string) (bool, error) {
	id, err := statFile(path)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	if f := t.files[id]; f != nil {
		f.users[owner] = struct{}{}
		t.mu.Unlock()
		return false, nil
	}
	t.mu.Unlock()
	// Inspect outside the lock: reading a large binary takes milliseconds.
	bin, err := gotls.Inspect(path)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.files[id]; f != nil {
		f.users[owner] = struct{}{}
		return false, nil
	}
	links, err := t.attachGo(path, bin)
	if err != nil {
		return false, err
	}
	syms := []string{gotls.WriteSym, gotls.ReadSym}
	for _, h := range bin.Handshakes {
		syms = append(syms, h.Name)
	}
	t.files[id] = &tlsFile{path: name, library: "go", symbols: syms, links: links,
		users: map[string]struct{}{owner: {}}}
	t.log.Info("Go crypto/tls probed", "path", name, "go", bin.Version, "device", id.dev, "inode", id.ino,
		"uprobes", len(links))
	return true, nil
}

// attachGo attaches the entry program at each function's entry and the
// return program at each of its RETs, by file offset.
func (t *TLS) attachGo(path string, bin *gotls.Binary) ([]link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("open %s for uprobes: %w", path, err)
	}
	var links []link.Link
	attach := func(fn gotls.Func, prog string, off uint64) error {
		l, err := ex.Uprobe(fn.Name, t.coll.Programs[prog], &link.UprobeOptions{Address: off})
		if err != nil {
			return fmt.Errorf("uprobe %s:%s at file offset %#x: %w", path, fn.Name, off, err)
		}
		links = append(links, l)
		return nil
	}
	// Write has no return probe (see go_tls_write_enter in c/tls.bpf.c).
	type probe struct {
		fn          gotls.Func
		enter, exit string
	}
	probes := []probe{{bin.Write, "go_tls_write_enter", ""}, {bin.Read, "go_tls_read_enter", "go_tls_read_exit"}}
	for _, h := range bin.Handshakes {
		probes = append(probes, probe{h, "go_tls_handshake_enter", "go_tls_handshake_exit"})
	}
	for _, p := range probes {
		// Returns first: an entry seen without its return would leave
		// a call in flight until the LRU evicts it.
		for _, r := range p.fn.Rets {
			if p.exit == "" {
				break
			}
			if err := attach(p.fn, p.exit, r); err != nil {
				_ = closeLinks(links)
				return nil, err
			}
		}
		if err := attach(p.fn, p.enter, p.fn.Entry); err != nil {
			_ = closeLinks(links)
			return nil, err
		}
	}
	return links, nil
}

// boringSSLMarker is a function BoringSSL's libssl exports and OpenSSL's
// does not: BoringSSL keeps OpenSSL's soname (libssl.so) and its SSL_read
// and SSL_write, so the file's symbols are what tell them apart.
const boringSSLMarker = "SSL_CTX_set_grease_enabled"

// Attach cookies of the OpenSSL-API probes (TLS_LIB_* in c/tls.bpf.c):
// which library's syscall ids the plaintext is reported under.
const (
	tlsLibOpenSSL   = 0
	tlsLibBoringSSL = 1
)

// attachFile attaches entry and return probes on every OpenSSL-API
// function the file exports, and names the library ("openssl" or
// "boringssl").
func (t *TLS) attachFile(path string) ([]link.Link, string, []string, error) {
	syms, err := exportedSymbols(path)
	if err != nil {
		return nil, "", nil, err
	}
	lib, cookie := "openssl", uint64(tlsLibOpenSSL)
	if syms[boringSSLMarker] {
		lib, cookie = "boringssl", tlsLibBoringSSL
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, "", nil, fmt.Errorf("open %s for uprobes: %w", path, err)
	}
	var links []link.Link
	var probed []string
	fail := func(err error) ([]link.Link, string, []string, error) {
		_ = closeLinks(links)
		return nil, "", nil, err
	}
	for _, s := range tlsSymbols {
		if !syms[s.sym] {
			if s.required {
				return fail(fmt.Errorf("%s: no symbol %s: not an OpenSSL or BoringSSL libssl, or stripped", path, s.sym))
			}
			continue
		}
		l, err := ex.Uprobe(s.sym, t.coll.Programs[s.enter], nil)
		if err != nil {
			return fail(fmt.Errorf("uprobe %s:%s: %w", path, s.sym, err))
		}
		links = append(links, l)
		// The cookie only where it is read (the return), and only when
		// not 0: a zero cookie attaches the way kernels without
		// cookies do.
		var opts *link.UprobeOptions
		if cookie != tlsLibOpenSSL {
			opts = &link.UprobeOptions{Cookie: cookie}
		}
		l, err = ex.Uretprobe(s.sym, t.coll.Programs[s.exit], opts)
		if err != nil {
			return fail(fmt.Errorf("uretprobe %s:%s: %w", path, s.sym, err))
		}
		links = append(links, l)
		probed = append(probed, s.sym)
	}
	return links, lib, probed, nil
}

// Release drops owner from every probed file; files left without users
// are detached.
func (t *TLS) Release(owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, f := range t.files {
		delete(f.users, owner)
		if len(f.users) > 0 {
			continue
		}
		for _, l := range f.links {
			if err := l.Close(); err != nil {
				t.log.Warn("detach TLS uprobe", "path", f.path, "error", err)
			}
		}
		delete(t.files, id)
		t.log.Info("TLS library unprobed: no enrolled user", "path", f.path)
	}
}

// Libraries lists the probed files.
func (t *TLS) Libraries() []TLSLibrary {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TLSLibrary, 0, len(t.files))
	for id, f := range t.files {
		lib := TLSLibrary{Path: f.path, Library: f.library, Device: id.dev, Inode: id.ino,
			Symbols: slices.Clone(f.symbols)}
		for u := range f.users {
			lib.Users = append(lib.Users, u)
		}
		sort.Strings(lib.Users)
		out = append(out, lib)
	}
	slices.SortFunc(out, func(a, b TLSLibrary) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Probed reports whether the file at path is probed.
func (t *TLS) Probed(path string) bool {
	id, err := statFile(path)
	if err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.files[id] != nil
}

// Close detaches everything and frees the programs.
func (t *TLS) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for id, f := range t.files {
		for _, l := range f.links {
			errs = append(errs, l.Close())
		}
		delete(t.files, id)
	}
	for _, l := range t.linkHooks {
		errs = append(errs, l.Close())
	}
	t.linkHooks = nil
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	return errors.Join(errs...)
}

func statFile(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// exportedSymbols is the set of dynamic symbols path defines.
func exportedSymbols(path string) (map[string]bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("dynamic symbols of %s: %w", path, err)
	}
	out := make(map[string]bool)
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			out[s.Name] = true
		}
	}
	return out, nil
}

// libDirs are where the dynamic loader finds libraries on the
// distributions container images are built from (glibc multiarch, musl,
// and the classic layouts).
var libDirs = []string{
	"lib", "lib64", "usr/lib", "usr/lib64", "usr/local/lib", "usr/local/lib64",
	"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
	// Debian's android-libboringssl: BoringSSL's libssl.so.0, apart
	// from OpenSSL's (programs find it by their RUNPATH).
	"usr/lib/x86_64-linux-gnu/android",
}

// FindOpenSSL lists the libssl files (OpenSSL's, or BoringSSL's, which
// keeps the name) under root's library directories (one path per distinct
// file), for probing before any process of that root runs.
func FindOpenSSL(root string) []string {
	seen := make(map[fileID]bool)
	var out []string
	for _, d := range libDirs {
		matches, _ := filepath.Glob(filepath.Join(root, d, "libssl.so*"))
		sort.Strings(matches)
		for _, m := range matches {
			fi, err := os.Stat(m)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			id, err := statFile(m)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			out = append(out, m)
		}
	}
	return out
}
