// Package gotls finds what the TLS program set probes in a Go binary:
// crypto/tls's (*Conn).Write, (*Conn).Read and handshake functions, their
// entry probe points and RET instructions, from .symtab or .gopclntab.
// The files inspected come from pods, so nothing here trusts them: any
// malformed input is an error, never a panic.
package gotls

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Go crypto/tls is probed in the Go binary itself: a Go program links its
// TLS stack statically, so the file probed is the executable.
//
// Two functions carry every byte of plaintext: (*Conn).Write and
// (*Conn).Read. Their entry gets a uprobe; their returns get a uprobe at
// each RET instruction, found by disassembling the function. A uretprobe
// would replace the return address on the goroutine's stack, which the Go
// runtime copies when the stack grows and reads when it unwinds (traceback,
// panics, GC): it crashes or corrupts Go programs.
//
// The handshake functions, (*Conn).clientHandshake and serverHandshake,
// move no plaintext but tell which socket a *Conn is on when its handshake
// runs before any Read or Write (net/http's server): the first application
// record can arrive with the handshake and be served by a Read that does
// no socket I/O. Not handshakeContext: every Read and Write passes through
// it (its fast path), and its RET would be one more single-step per call.
const (
	WriteSym           = "crypto/tls.(*Conn).Write"
	ReadSym            = "crypto/tls.(*Conn).Read"
	ClientHandshakeSym = "crypto/tls.(*Conn).clientHandshake"
	ServerHandshakeSym = "crypto/tls.(*Conn).serverHandshake"
)

// ErrNotGoTLS is returned for a file that is not a Go binary, or a Go
// binary that does not contain crypto/tls: there is nothing to probe and
// nothing to report.
var ErrNotGoTLS = errors.New("not a Go binary using crypto/tls")

// Func is one probed function of a Go binary: the file offsets of its
// entry probe and of each of its RET instructions.
type Func struct {
	Name  string
	Entry uint64   // file offset: the function's first instruction, or its stack check's jump
	Rets  []uint64 // file offsets
}

// isCondJump reports whether op is a conditional jump (Jcc).
func isCondJump(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO, x86asm.JP, x86asm.JNP, x86asm.JS, x86asm.JNS:
		return true
	}
	return false
}

// Binary is what probing a Go binary's crypto/tls needs.
type Binary struct {
	Version    string // Go version that built it ("go1.22.5")
	Write      Func
	Read       Func
	Handshakes []Func // those found: clientHandshake, serverHandshake
}

// Inspect finds (*Conn).Write and (*Conn).Read in the Go binary at
// path: from .symtab, or from .gopclntab when the binary is stripped (Go
// keeps its pclntab for the runtime, so `-ldflags=-s -w` still leaves it).
// It fails with ErrNotGoTLS for files it has nothing to do with, and with
// an error naming the problem for Go binaries it cannot probe (another
// architecture, a Go version without the register ABI, no symbols at all).
func Inspect(path string) (b *Binary, err error) {
	defer func() {
		// debug/elf and debug/gosym are not hardened against every
		// malformed file; a pod's binary must not take the daemon down.
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("%s: malformed binary: %v", path, r)
		}
	}()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, ErrNotGoTLS
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: Go binary for %s: only amd64 is probed", path, f.Machine)
	}
	if !registerABI(bi.GoVersion) {
		return nil, fmt.Errorf("%s: built by %s: crypto/tls is probed from Go 1.17 (register ABI)", path, bi.GoVersion)
	}
	funcs, err := funcBounds(f, WriteSym, ReadSym, ClientHandshakeSym, ServerHandshakeSym)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", path, bi.GoVersion, err)
	}
	if len(funcs) == 0 {
		return nil, ErrNotGoTLS // crypto/tls not linked in
	}
	b = &Binary{Version: bi.GoVersion}
	for _, fn := range []struct {
		name string
		out  *Func
	}{{WriteSym, &b.Write}, {ReadSym, &b.Read}} {
		bounds, ok := funcs[fn.name]
		if !ok {
			// crypto/tls is linked but the linker dropped this method:
			// the program never calls it through a *tls.Conn.
			return nil, fmt.Errorf("%s (%s): %s not in the binary", path, bi.GoVersion, fn.name)
		}
		g, err := funcOffsets(f, fn.name, bounds[0], bounds[1])
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", path, bi.GoVersion, err)
		}
		*fn.out = g
	}
	for _, name := range []string{ClientHandshakeSym, ServerHandshakeSym} {
		bounds, ok := funcs[name]
		if !ok {
			continue // a program that only dials, or only serves
		}
		g, err := funcOffsets(f, name, bounds[0], bounds[1])
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", path, bi.GoVersion, err)
		}
		b.Handshakes = append(b.Handshakes, g)
	}
	return b, nil
}

// registerABI reports whether version ("go1.22.5", "go1.26rc1",
// "devel ...") passes arguments in registers on amd64 (Go 1.17+).
func registerABI(version string) bool {
	v, ok := strings.CutPrefix(version, "go1.")
	if !ok {
		return strings.HasPrefix(version, "devel")
	}
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	minor, err := strconv.Atoi(v[:end])
	return err == nil && minor >= 17
}

// funcBounds returns [start, end) virtual addresses of the named
// functions, from .symtab or else .gopclntab.
func funcBounds(f *elf.File, names ...string) (map[string][2]uint64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string][2]uint64)
	if syms, err := f.Symbols(); err == nil && len(syms) > 0 {
		for _, s := range syms {
			if want[s.Name] && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
				out[s.Name] = [2]uint64{s.Value, s.Value + s.Size}
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	pcln := f.Section(".gopclntab")
	text := f.Section(".text")
	if pcln == nil || text == nil {
		return nil, errors.New("stripped: no .symtab and no .gopclntab")
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("read .gopclntab: %w", err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("parse .gopclntab: %w", err)
	}
	for _, fn := range tab.Funcs {
		if want[fn.Name] {
			out[fn.Name] = [2]uint64{fn.Entry, fn.End}
		}
	}
	return out, nil
}

// funcOffsets disassembles the function at [start, end) and returns the
// file offsets of its entry and its RET instructions.
func funcOffsets(f *elf.File, name string, start, end uint64) (Func, error) {
	var prog *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && start >= p.Vaddr && end <= p.Vaddr+p.Filesz {
			prog = p
			break
		}
	}
	if prog == nil {
		return Func{}, fmt.Errorf("%s at %#x: not in an executable segment", name, start)
	}
	if end-start > 1<<20 {
		return Func{}, fmt.Errorf("%s: implausible size %d", name, end-start)
	}
	code := make([]byte, end-start)
	if _, err := prog.ReadAt(code, int64(start-prog.Vaddr)); err != nil {
		return Func{}, fmt.Errorf("read %s: %w", name, err)
	}
	toFile := func(vaddr uint64) uint64 { return vaddr - prog.Vaddr + prog.Off }
	g := Func{Name: name, Entry: toFile(start)}
	// The entry probe goes on the stack check's conditional jump when the
	// function starts with one (LEAQ/CMPQ against g.stackguard0 in R14,
	// then JBE to morestack): the kernel emulates a jump, where it would
	// single-step the CMPQ (about ten times the cost per hit, paid by
	// every process running the file, enrolled or not). Nothing before the
	// jump writes AX, BX, CX or R14. When the stack grows the function
	// starts over and the entry is simply recorded again.
	prologue := true
	for pc, n := 0, 0; pc < len(code); n++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return Func{}, fmt.Errorf("disassemble %s at +%#x: %w", name, pc, err)
		}
		switch {
		case inst.Op == x86asm.RET:
			g.Rets = append(g.Rets, toFile(start+uint64(pc)))
		case prologue && isCondJump(inst.Op):
			g.Entry = toFile(start + uint64(pc))
			prologue = false
		case prologue && (n >= 2 || (inst.Op != x86asm.LEA && inst.Op != x86asm.CMP)):
			prologue = false
		}
		pc += inst.Len
	}
	if len(g.Rets) == 0 {
		return Func{}, fmt.Errorf("%s: no RET instruction found", name)
	}
	return g, nil
}
