// Package registry is the persisted set of enrolled pod attachments.
//
// The registry is weir-daemon's source of truth for which pods it watches.
// It outlives the daemon process: a restarted daemon must keep watching pods
// that were enrolled before, because the CNI plugin only calls ADD once per
// pod. So every mutation is written to disk before it is acknowledged, and
// the file is replaced atomically (temporary file, fsync, rename, fsync of
// the directory): after a crash at any point the previous or the new state is
// on disk, never a mix.
//
// The whole set is rewritten on every mutation. A node runs at most a few
// hundred pods and changes a few per second; a single small file that is
// always complete is simpler to trust than a log that needs compaction.
//
// Each attachment gets a numeric id that the eBPF side stores per network
// namespace. Ids are never reused while the state directory lives (the next
// id is persisted with the pods), so an event tagged with a stale id can never
// be attributed to a different pod.
//
// Components that mirror the registry (the eBPF netns map) register an
// Observer at construction and are told about every pod, including those
// loaded from disk.
//
// A pod is the daemon's own Pod type; the file holds each as the enrollment
// contract's record (enrollpb.Pod, imported downward from enrollapi) in
// protojson, so the file's field names are the API's.
package registry

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/atomicfile"
)

const (
	// DefaultMaxPods bounds the registry when Options.MaxPods is 0. A node
	// runs at most a few hundred pods; this leaves room for churn.
	DefaultMaxPods = 4096

	// DefaultMaxFileBytes bounds the registry file when
	// Options.MaxFileBytes is 0. The enrollment service bounds every field
	// of a pod (a record is at most a few kilobytes), so DefaultMaxPods
	// pods fit well inside it; the bound is a last line of defence.
	DefaultMaxFileBytes = 32 << 20

	// FileName is the registry file inside the state directory.
	FileName = "pods.json"

	// formatVersion is the version of the file's envelope.
	formatVersion = 1

	tempSuffix = ".tmp"
)

// ErrFull is returned by Enroll when the registry holds MaxPods attachments
// and the call would add another.
var ErrFull = errors.New("registry is full")

// ErrTooLarge is returned when a change would make the registry file larger
// than its bound; the change is refused and nothing is written.
var ErrTooLarge = errors.New("registry file would exceed its size bound")

// ErrIPInUse is wrapped by the *IPInUseError Enroll returns when an address
// of the pod is already held by another enrolled attachment.
var ErrIPInUse = errors.New("address is enrolled for another pod")

// IPInUseError names the address and the attachment that holds it.
type IPInUseError struct {
	Addr  netip.Addr
	Owner *Pod // a copy
}

func (e *IPInUseError) Error() string {
	return fmt.Sprintf("address %s is enrolled for attachment %s (pod %s/%s)", e.Addr, KeyOf(e.Owner),
		e.Owner.Namespace, e.Owner.Name)
}

func (e *IPInUseError) Unwrap() error { return ErrIPInUse }

// podAddrs returns the addresses of p's IPs that parse.
func podAddrs(p *Pod) []netip.Addr {
	out := make([]netip.Addr, 0, len(p.IPs))
	for _, ip := range p.IPs {
		if pr, err := netip.ParsePrefix(ip.Address); err == nil {
			out = append(out, pr.Addr().Unmap())
		}
	}
	return out
}

// Key identifies one pod attachment: the CNI key (container ID, interface
// name) qualified by the CNI network name.
type Key struct {
	Network     string
	ContainerID string
	Ifname      string
}

// KeyOf returns the key of p.
func KeyOf(p *Pod) Key {
	return Key{Network: p.Network, ContainerID: p.ContainerID, Ifname: p.Ifname}
}

func (k Key) String() string { return k.Network + "/" + k.ContainerID + "/" + k.Ifname }

// Observer is told about every change to the registry, in order. Calls are
// made with the registry's lock held, so that observers see changes in the
// order they were made: an observer must return quickly and must not call
// back into the Registry. Pods passed to observers are copies.
type Observer interface {
	// PodEnrolled is called when a pod is added or its record replaced,
	// and for every pod loaded from disk at Open.
	PodEnrolled(*Pod)
	// PodRemoved is called when a pod is removed, and before PodEnrolled
	// when a re-enrollment changes the pod's network namespace.
	PodRemoved(*Pod)
}

// Options configures Open.
type Options struct {
	// Dir is the state directory holding FileName. Created 0700 if absent.
	Dir string
	// MaxPods bounds the number of attachments; 0 means DefaultMaxPods.
	MaxPods int
	// MaxFileBytes bounds the registry file; 0 means DefaultMaxFileBytes.
	MaxFileBytes int
	// Observers are told about every pod, starting with those on disk.
	Observers []Observer
	// Logger receives recovery and persistence messages; nil discards.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Stats are the registry's counters.
type Stats struct {
	Pods    int
	MaxPods int
	// FullRejections counts Enroll calls refused with ErrFull.
	FullRejections uint64
}

// Registry is the set of enrolled pod attachments. It is safe for concurrent
// use.
type Registry struct {
	path         string
	maxPods      int
	maxFileBytes int
	observers    []Observer
	log          *slog.Logger
	now          func() time.Time

	// beforeRename, if set, runs between writing the temporary file and
	// renaming it into place. Tests use it to simulate a crash there.
	beforeRename func() error

	mu     sync.Mutex
	pods   map[Key]*Pod
	nextID uint32
	// owner maps each enrolled address to the attachment holding it, so
	// one address always names one pod.
	owner map[netip.Addr]Key

	fullRejections atomic.Uint64
}

// fileFormat is the on-disk envelope. Pods are protojson objects so the
// file's field names match the API's proto definition.
type fileFormat struct {
	Version int               `json:"version"`
	NextID  uint32            `json:"nextId"`
	Pods    []json.RawMessage `json:"pods"`
}

// Open loads the registry from opts.Dir, or starts an empty one if the
// directory holds no registry file. A temporary file left by a crash between
// write and rename is removed: the previous file is authoritative. A corrupt
// registry file is an error; the daemon must not silently forget pods.
func Open(opts Options) (*Registry, error) {
	if opts.Dir == "" {
		return nil, errors.New("registry: state directory is empty")
	}
	if opts.MaxPods < 0 {
		return nil, fmt.Errorf("registry: max pods must not be negative, got %d", opts.MaxPods)
	}
	r := &Registry{
		path:         filepath.Join(opts.Dir, FileName),
		maxPods:      cmp.Or(opts.MaxPods, DefaultMaxPods),
		maxFileBytes: cmp.Or(opts.MaxFileBytes, DefaultMaxFileBytes),
		observers:    slices.Clone(opts.Observers),
		log:          opts.Logger,
		now:          opts.Now,
		pods:         make(map[Key]*Pod),
		owner:        make(map[netip.Addr]Key),
		nextID:       1,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: create state dir: %w", err)
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	for _, p := range r.sortedLocked() {
		for _, o := range r.observers {
			o.PodEnrolled(p.Clone())
		}
	}
	return r, nil
}

func (r *Registry) load() error {
	tmp := r.path + tempSuffix
	if err := os.Remove(tmp); err == nil {
		r.log.Warn("removed registry temp file left by an interrupted write; the previous registry file stays authoritative",
			"path", tmp)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("registry: remove leftover temp file: %w", err)
	}

	data, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry: read %s: %w", r.path, err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("registry: %s is corrupt: %w", r.path, err)
	}
	if f.Version != formatVersion {
		return fmt.Errorf("registry: %s has format version %d, this daemon reads version %d", r.path, f.Version, formatVersion)
	}
	if f.NextID == 0 {
		return fmt.Errorf("registry: %s is corrupt: nextId is 0", r.path)
	}
	r.nextID = f.NextID
	for i, raw := range f.Pods {
		rec := &enrollpb.Pod{}
		if err := protojson.Unmarshal(raw, rec); err != nil {
			return fmt.Errorf("registry: %s is corrupt: pod %d: %w", r.path, i, err)
		}
		p := PodFromProto(rec)
		k := KeyOf(p)
		if p.ID == 0 || p.ID >= f.NextID {
			return fmt.Errorf("registry: %s is corrupt: pod %s has id %d, want 1..%d", r.path, k, p.ID, f.NextID-1)
		}
		if _, dup := r.pods[k]; dup {
			return fmt.Errorf("registry: %s is corrupt: pod %s appears twice", r.path, k)
		}
		r.pods[k] = p
	}
	for _, p := range r.sortedLocked() {
		for _, a := range podAddrs(p) {
			if o, taken := r.owner[a]; taken {
				// Written by a daemon that did not check ownership: keep
				// both pods, the older one owns the address.
				r.log.Warn("registry file holds an address twice; the older pod keeps it",
					"addr", a, "owner", o.String(), "also", KeyOf(p).String())
				continue
			}
			r.owner[a] = KeyOf(p)
		}
	}
	if len(r.pods) > r.maxPods {
		// Loading more than the bound is allowed (the bound may have been
		// lowered); only new enrollments are refused.
		r.log.Warn("registry holds more pods than the configured bound", "pods", len(r.pods), "maxPods", r.maxPods)
	}
	return nil
}

// Enroll stores p, replacing any record with the same key, and returns the
// stored copy. A new attachment gets the next id and EnrolledAt = now; a
// replaced one keeps its id, and keeps its EnrolledAt unless its network
// namespace changed. The change is on disk when Enroll returns nil.
func (r *Registry) Enroll(p *Pod) (*Pod, error) {
	k := KeyOf(p)
	if k.Network == "" || k.ContainerID == "" || k.Ifname == "" {
		return nil, fmt.Errorf("registry: enroll %s: network, container id and ifname are required", k)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	for _, a := range podAddrs(p) {
		if o, taken := r.owner[a]; taken && o != k {
			return nil, fmt.Errorf("registry: enroll %s: %w", k, &IPInUseError{Addr: a, Owner: r.pods[o].Clone()})
		}
	}
	stored := p.Clone()
	old, replace := r.pods[k]
	nextID := r.nextID
	switch {
	case replace:
		stored.ID = old.ID
		stored.EnrolledAt = old.EnrolledAt
		if old.NetnsInode != p.NetnsInode || stored.EnrolledAt.IsZero() {
			stored.EnrolledAt = enrollTime(r.now())
		}
	case len(r.pods) >= r.maxPods:
		r.fullRejections.Add(1)
		return nil, fmt.Errorf("registry: enroll %s: %d of %d pods enrolled: %w", k, len(r.pods), r.maxPods, ErrFull)
	case nextID == math.MaxUint32:
		return nil, fmt.Errorf("registry: enroll %s: pod ids exhausted", k)
	default:
		stored.ID = nextID
		stored.EnrolledAt = enrollTime(r.now())
		nextID++
	}

	if err := r.persistLocked(nextID, func(yield func(*Pod) bool) {
		if !yield(stored) {
			return
		}
		for key, q := range r.pods {
			if key != k && !yield(q) {
				return
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("registry: enroll %s: %w", k, err)
	}
	if replace {
		r.dropOwnerLocked(old)
	}
	r.pods[k] = stored
	r.nextID = nextID
	for _, a := range podAddrs(stored) {
		r.owner[a] = k
	}

	for _, o := range r.observers {
		if replace && old.NetnsInode != stored.NetnsInode {
			o.PodRemoved(old.Clone())
		}
		o.PodEnrolled(stored.Clone())
	}
	return stored.Clone(), nil
}

// Remove forgets the attachment k. It returns the removed pod, or nil if k was
// not enrolled (not an error: CNI DEL is idempotent).
func (r *Registry) Remove(k Key) (*Pod, error) {
	removed, err := r.RemoveIf(func(p *Pod) bool { return KeyOf(p) == k })
	if err != nil || len(removed) == 0 {
		return nil, err
	}
	return removed[0], nil
}

// RemoveIf removes every pod for which drop returns true, in one persisted
// step, and returns the removed pods ordered by id. drop is called with the
// registry's lock held and must not call back into the Registry.
func (r *Registry) RemoveIf(drop func(*Pod) bool) ([]*Pod, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	var removed []*Pod
	for _, p := range r.sortedLocked() {
		if drop(p) {
			removed = append(removed, p)
		}
	}
	if len(removed) == 0 {
		return nil, nil
	}
	gone := make(map[Key]bool, len(removed))
	for _, p := range removed {
		gone[KeyOf(p)] = true
	}
	if err := r.persistLocked(r.nextID, func(yield func(*Pod) bool) {
		for k, p := range r.pods {
			if !gone[k] && !yield(p) {
				return
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("registry: remove %d pods: %w", len(removed), err)
	}
	out := make([]*Pod, 0, len(removed))
	for _, p := range removed {
		delete(r.pods, KeyOf(p))
		r.dropOwnerLocked(p)
		for _, o := range r.observers {
			o.PodRemoved(p.Clone())
		}
		out = append(out, p.Clone())
	}
	return out, nil
}

// GC removes every attachment of network whose key is not in valid, and
// returns the removed pods. It implements CNI GC: valid is the runtime's
// cni.dev/valid-attachments for that network.
func (r *Registry) GC(network string, valid []Key) ([]*Pod, error) {
	keep := make(map[Key]bool, len(valid))
	for _, k := range valid {
		keep[k] = true
	}
	return r.RemoveIf(func(p *Pod) bool {
		k := KeyOf(p)
		return k.Network == network && !keep[k]
	})
}

// Get returns a copy of the attachment k, or false.
func (r *Registry) Get(k Key) (*Pod, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[k]
	if !ok {
		return nil, false
	}
	return p.Clone(), true
}

// List returns copies of every attachment, ordered by id.
func (r *Registry) List() []*Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	sorted := r.sortedLocked()
	for i, p := range sorted {
		sorted[i] = p.Clone()
	}
	return sorted
}

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	n := len(r.pods)
	r.mu.Unlock()
	return Stats{Pods: n, MaxPods: r.maxPods, FullRejections: r.fullRejections.Load()}
}

// Path returns the registry file's path.
func (r *Registry) Path() string { return r.path }

// dropOwnerLocked forgets the addresses p owns.
func (r *Registry) dropOwnerLocked(p *Pod) {
	k := KeyOf(p)
	for _, a := range podAddrs(p) {
		if r.owner[a] == k {
			delete(r.owner, a)
		}
	}
}

func (r *Registry) sortedLocked() []*Pod {
	out := make([]*Pod, 0, len(r.pods))
	for _, p := range r.pods {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pod) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// persistLocked writes the state made of nextID and the pods yielded by
// pods, atomically. Nothing in memory changes: the caller commits only if
// this returns nil, so memory never runs ahead of disk.
func (r *Registry) persistLocked(nextID uint32, pods func(yield func(*Pod) bool)) error {
	var list []*Pod
	for p := range pods {
		list = append(list, p)
	}
	slices.SortFunc(list, func(a, b *Pod) int { return cmp.Compare(a.ID, b.ID) })
	f := fileFormat{Version: formatVersion, NextID: nextID, Pods: make([]json.RawMessage, 0, len(list))}
	for _, p := range list {
		raw, err := protojson.Marshal(p.Proto())
		if err != nil {
			return fmt.Errorf("encode pod %s: %w", KeyOf(p), err)
		}
		f.Pods = append(f.Pods, raw)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry: %w", err)
	}
	if len(data)+1 > r.maxFileBytes {
		return fmt.Errorf("%d bytes, bound %d: %w", len(data)+1, r.maxFileBytes, ErrTooLarge)
	}
	return atomicfile.Write(r.path, append(data, '\n'), atomicfile.Options{Temp: r.path + tempSuffix, BeforeRename: r.beforeRename})
}
