// Package spool is the weir CNI plugin's queue of enrollment calls made while
// weir-daemon was down: the record type (enrollpb.SpoolRecord), the file
// layout, the writer the plugin uses and the reader the daemon drains with.
// It is one part of the contract described in package enrollapi.
//
// The plugin must fail open: when the daemon is unreachable, CNI ADD and DEL
// still succeed, but the daemon has to learn about the call later or it would
// never watch (or never forget) that pod. So the plugin writes the call to a
// spool directory as one file per record, and the daemon replays the files,
// in write order, when it starts.
//
// Each record is written atomically (temporary file, fsync, rename, fsync of
// the directory), so a reader never sees a partially written record, even if
// the plugin is killed mid-write. File names start with the wall-clock time in
// nanoseconds, zero-padded, so lexicographic order is write order; the process
// id and a random suffix keep names unique across concurrent plugin
// invocations. (Should the wall clock step back while the daemon is down,
// records written after the step replay before those written just before it;
// the daemon's reconcile round corrects what that reordering could get
// wrong.) Records are protojson, so an operator can read them.
//
// The number of records is bounded: the spool is a stop-gap for a daemon that
// is briefly down, not a log, and a node whose daemon never comes back must
// not fill its disk. Write returns ErrFull at the bound.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weirnet/weir/enrollapi"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/atomicfile"
)

const (
	// DefaultMaxRecords is the bound New uses when given maxRecords <= 0.
	DefaultMaxRecords = enrollapi.DefaultSpoolMaxRecords

	// MaxRecordBytes bounds the size of one record file. A real record is
	// well under a kilobyte; anything larger is treated as corrupt rather
	// than read into memory.
	MaxRecordBytes = 1 << 20

	// StaleTempAge is how old a temporary file must be before Drain removes
	// it. A temporary file only survives if its writer died between create
	// and rename; a live plugin finishes a write in milliseconds, so this is
	// generous and never races with a writer.
	StaleTempAge = 5 * time.Minute

	// recordSuffix marks a complete record; badSuffix a record moved aside.
	recordSuffix = ".rec"
	badSuffix    = ".bad"
	// tempPrefix hides in-progress writes from Drain, which skips names
	// starting with a dot.
	tempPrefix = ".tmp-"
	lockName   = ".lock"
)

// ErrFull is returned by Write when the spool already holds its maximum
// number of records.
var ErrFull = errors.New("spool is full")

// ErrRejected may be wrapped by a Drain apply function to say that a record
// can never be applied (for example it fails validation). Drain then moves
// the record aside instead of stopping, so one bad record cannot block the
// records behind it forever.
var ErrRejected = errors.New("record rejected")

// Spool is a directory of pending enrollment calls. It holds no open files;
// a Spool value is cheap and safe for concurrent use, also across processes
// (Write serialises on a lock file in the directory so the bound is exact).
type Spool struct {
	dir        string
	maxRecords int
	now        func() time.Time
}

// New returns the spool in dir, holding at most maxRecords records
// (DefaultMaxRecords if maxRecords <= 0). The directory is created, mode
// 0700, on the first Write.
func New(dir string, maxRecords int) *Spool {
	if maxRecords <= 0 {
		maxRecords = DefaultMaxRecords
	}
	return &Spool{dir: dir, maxRecords: maxRecords, now: time.Now}
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// MaxRecords returns the spool's bound.
func (s *Spool) MaxRecords() int { return s.maxRecords }

// Write stores rec as a new record and returns the record's path. The record
// is durable when Write returns nil. rec must carry an operation; its Time is
// set to now if unset.
func (s *Spool) Write(rec *enrollpb.SpoolRecord) (string, error) {
	if rec == nil || rec.GetOp() == nil {
		return "", errors.New("spool write: record has no operation (enroll or unenroll)")
	}
	data, err := protojson.Marshal(recordWithTime(rec, s.now()))
	if err != nil {
		return "", fmt.Errorf("spool write: encode record: %w", err)
	}
	if len(data) > MaxRecordBytes {
		return "", fmt.Errorf("spool write: record is %d bytes, over the %d byte limit", len(data), MaxRecordBytes)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return "", fmt.Errorf("spool write: create spool dir: %w", err)
	}

	unlock, err := s.lock()
	if err != nil {
		return "", err
	}
	defer unlock()

	names, err := s.records()
	if err != nil {
		return "", fmt.Errorf("spool write: %w", err)
	}
	if len(names) >= s.maxRecords {
		return "", fmt.Errorf("spool write: %d records in %s: %w", len(names), s.dir, ErrFull)
	}

	name, err := s.newName()
	if err != nil {
		return "", fmt.Errorf("spool write: %w", err)
	}
	final := filepath.Join(s.dir, name)
	if err := atomicfile.Write(final, data, atomicfile.Options{Temp: filepath.Join(s.dir, tempPrefix+name), Exclusive: true}); err != nil {
		return "", fmt.Errorf("spool write: %w", err)
	}
	return final, nil
}

// DrainStats counts what one Drain did.
type DrainStats struct {
	Applied      int // records applied and removed
	Corrupt      int // records that could not be decoded, moved aside as *.bad
	Rejected     int // records apply rejected with ErrRejected, moved aside as *.bad
	TempsRemoved int // stale temporary files of writers that died mid-write
}

// Drain replays every record, oldest first, through apply. A record is removed
// only after apply returned nil, so a crash during Drain replays it again on
// the next start: apply must be idempotent (every enrollment RPC is).
//
// A record that cannot be decoded, or that apply rejects with an error
// wrapping ErrRejected, is renamed to *.bad and counted. Any other apply error
// stops Drain with that error, leaving the record and everything after it in
// place: order matters (an unenroll must not overtake its enroll). Drain also
// stops, returning ctx.Err(), when ctx is done. A missing directory is an
// empty spool.
func (s *Spool) Drain(ctx context.Context, apply func(*enrollpb.SpoolRecord) error) (DrainStats, error) {
	var st DrainStats
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("spool drain: read %s: %w", s.dir, err)
	}
	now := s.now()
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < StaleTempAge {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, e.Name())); err == nil {
			st.TempsRemoved++
		}
	}

	names, err := s.records()
	if err != nil {
		return st, fmt.Errorf("spool drain: %w", err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		path := filepath.Join(s.dir, name)
		rec, err := readRecord(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // drained concurrently
		}
		if err != nil {
			if err := moveAside(path); err != nil {
				return st, fmt.Errorf("spool drain: %w", err)
			}
			st.Corrupt++
			continue
		}
		if err := apply(rec); err != nil {
			if !errors.Is(err, ErrRejected) {
				return st, fmt.Errorf("spool drain: apply %s: %w", name, err)
			}
			if err := moveAside(path); err != nil {
				return st, fmt.Errorf("spool drain: %w", err)
			}
			st.Rejected++
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("spool drain: remove applied record: %w", err)
		}
		st.Applied++
	}
	return st, nil
}

// Pending returns the number of records waiting to be drained.
func (s *Spool) Pending() (int, error) {
	names, err := s.records()
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return len(names), err
}

// records returns the names of complete records, in write order.
func (s *Spool) records() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read spool dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && !strings.HasPrefix(n, ".") && strings.HasSuffix(n, recordSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names) // ReadDir sorts already; keep the ordering explicit.
	return names, nil
}

// newName returns a record name whose lexicographic order is write order:
// 19-digit nanoseconds since the epoch, pid, random suffix.
func (s *Spool) newName() (string, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("random name suffix: %w", err)
	}
	return fmt.Sprintf("%019d-%010d-%s%s", s.now().UnixNano(), os.Getpid(), hex.EncodeToString(rnd[:]), recordSuffix), nil
}

// lock takes an exclusive flock on the spool's lock file, so concurrent
// plugin processes count records and add theirs one at a time.
func (s *Spool) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool lock: flock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the flock
}

func recordWithTime(rec *enrollpb.SpoolRecord, now time.Time) *enrollpb.SpoolRecord {
	if rec.GetTime() != nil {
		return rec
	}
	out := &enrollpb.SpoolRecord{Time: timestamppb.New(now)}
	switch op := rec.GetOp().(type) {
	case *enrollpb.SpoolRecord_Enroll:
		out.Op = &enrollpb.SpoolRecord_Enroll{Enroll: op.Enroll}
	case *enrollpb.SpoolRecord_Unenroll:
		out.Op = &enrollpb.SpoolRecord_Unenroll{Unenroll: op.Unenroll}
	}
	return out
}

func readRecord(path string) (*enrollpb.SpoolRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxRecordBytes {
		return nil, fmt.Errorf("record %s is over %d bytes", path, MaxRecordBytes)
	}
	rec := &enrollpb.SpoolRecord{}
	// DiscardUnknown: a newer plugin may add fields an older daemon ignores.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	if rec.GetOp() == nil {
		return nil, fmt.Errorf("record %s has no operation", path)
	}
	return rec, nil
}

func moveAside(path string) error {
	if err := os.Rename(path, path+badSuffix); err != nil {
		return fmt.Errorf("move record aside: %w", err)
	}
	return nil
}
