package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel reports a process's cgroup as the cgroup v2 id
// (bpf_get_current_cgroup_id), which is the inode number of the cgroup's
// directory in the cgroup2 mount. Container runtimes name those directories
// after the container id, so a walk of the mount maps id -> path ->
// container id. Walks are expensive, so results are cached, and since cgroup
// ids are never reused a miss is cached too.

// Defaults for CgroupResolverConfig.
const (
	DefaultCgroupCacheSize   = 4096
	DefaultCgroupMaxWalkDirs = 100000
)

// Candidate cgroup2 mount points: the hybrid layout first (these machines),
// then the unified layout.
var cgroup2Candidates = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}

// FindCgroup2Mount returns the cgroup2 mount point.
func FindCgroup2Mount() (string, error) {
	for _, p := range cgroup2Candidates {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup2 filesystem mounted at any of %s", strings.Join(cgroup2Candidates, ", "))
}

// CgroupResolverConfig configures a CgroupResolver.
type CgroupResolverConfig struct {
	// Root is the cgroup2 mount point (default: FindCgroup2Mount).
	Root string
	// CacheSize bounds the cached ids, found or not (oldest evicted first).
	CacheSize int
	// MaxWalkDirs bounds the directories one walk visits.
	MaxWalkDirs int
}

// CgroupStats counts the resolver's work and the bounds it hit.
type CgroupStats struct {
	Lookups, Hits  uint64
	Walks          uint64
	WalkLimitHits  uint64 // walks stopped at MaxWalkDirs
	WalkErrors     uint64
	CacheEvictions uint64
	Cached         int // gauge
}

type cgroupEntry struct {
	path        string // relative to the root, "" when not found
	containerID string
}

// CgroupResolver maps cgroup ids to cgroup paths and container ids. It is
// safe for concurrent use.
type CgroupResolver struct {
	root     string
	size     int
	maxWalk  int
	mu       sync.Mutex
	cache    map[uint64]cgroupEntry
	order    []uint64 // insertion order ring, for eviction
	orderPos int
	stats    CgroupStats
}

// NewCgroupResolver returns a resolver over the cgroup2 mount.
func NewCgroupResolver(cfg CgroupResolverConfig) (*CgroupResolver, error) {
	if cfg.CacheSize < 0 || cfg.MaxWalkDirs < 0 {
		return nil, fmt.Errorf("cgroup resolver config: CacheSize (%d) and MaxWalkDirs (%d) must not be negative", cfg.CacheSize, cfg.MaxWalkDirs)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCgroupCacheSize
	}
	if cfg.MaxWalkDirs == 0 {
		cfg.MaxWalkDirs = DefaultCgroupMaxWalkDirs
	}
	if cfg.Root == "" {
		root, err := FindCgroup2Mount()
		if err != nil {
			return nil, fmt.Errorf("cgroup resolver: %w", err)
		}
		cfg.Root = root
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cfg.Root, &st); err != nil {
		return nil, fmt.Errorf("cgroup resolver: root %s: %w", cfg.Root, err)
	}
	return &CgroupResolver{
		root:    cfg.Root,
		size:    cfg.CacheSize,
		maxWalk: cfg.MaxWalkDirs,
		cache:   make(map[uint64]cgroupEntry, cfg.CacheSize),
		order:   make([]uint64, 0, cfg.CacheSize),
	}, nil
}

// ContainerID returns the container id of cgroup id, or "" when the cgroup
// is not a container's (or no longer exists). It has the shape of
// capture.Config.ContainerID, which the monitor sets to it.
func (r *CgroupResolver) ContainerID(id uint64) string {
	e, _ := r.lookup(id)
	return e.containerID
}

// Path returns the path of cgroup id relative to the cgroup2 root (like
// /proc/PID/cgroup shows it), or an error when it is not found.
func (r *CgroupResolver) Path(id uint64) (string, error) {
	e, err := r.lookup(id)
	if err != nil {
		return "", err
	}
	if e.path == "" {
		return "", fmt.Errorf("cgroup id %d: not found under %s", id, r.root)
	}
	return e.path, nil
}

// Stats returns a copy of the counters.
func (r *CgroupResolver) Stats() CgroupStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Cached = len(r.cache)
	return s
}

func (r *CgroupResolver) lookup(id uint64) (cgroupEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Lookups++
	if e, ok := r.cache[id]; ok {
		r.stats.Hits++
		return e, nil
	}
	found, err := r.walk(id)
	if err != nil {
		r.stats.WalkErrors++
		// Not cached: the next lookup retries.
		return cgroupEntry{}, err
	}
	r.put(id, found)
	return found, nil
}

// walk visits the mount once, returning the entry for want and caching the
// container cgroups it passes, so one walk serves many later lookups.
func (r *CgroupResolver) walk(want uint64) (cgroupEntry, error) {
	r.stats.Walks++
	var found cgroupEntry
	visited := 0
	errLimit := errors.New("walk limit")
	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == r.root {
				return err
			}
			return nil // a cgroup removed during the walk
		}
		if !d.IsDir() {
			return nil
		}
		if visited++; visited > r.maxWalk {
			return errLimit
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, r.root), "/")
		e := cgroupEntry{path: rel, containerID: ContainerIDFromPath(rel)}
		if st.Ino == want {
			found = e
		} else if e.containerID != "" {
			if _, ok := r.cache[st.Ino]; !ok {
				r.put(st.Ino, e)
			}
		}
		return nil
	})
	if errors.Is(err, errLimit) {
		r.stats.WalkLimitHits++
		err = nil
	}
	if err != nil {
		return cgroupEntry{}, fmt.Errorf("walking cgroup2 mount %s: %w", r.root, err)
	}
	return found, nil
}

func (r *CgroupResolver) put(id uint64, e cgroupEntry) {
	if len(r.order) < r.size {
		r.order = append(r.order, id)
	} else {
		delete(r.cache, r.order[r.orderPos])
		r.stats.CacheEvictions++
		r.order[r.orderPos] = id
		r.orderPos = (r.orderPos + 1) % r.size
	}
	r.cache[id] = e
}

// Container runtimes' cgroup name prefixes (systemd cgroup driver); with
// the cgroupfs driver the directory is the bare id.
var containerPrefixes = []string{"cri-containerd-", "crio-", "docker-", "libpod-"}

// ContainerIDFromPath extracts the 64-hex container id from a cgroup path,
// the innermost one when several match, or "" when there is none. Examples:
// /k8s.io/<id> (containerd), /kubepods.slice/.../cri-containerd-<id>.scope,
// .../crio-<id>.scope, /docker/<id>, /system.slice/docker-<id>.scope.
func ContainerIDFromPath(p string) string {
	for p != "" {
		var elem string
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p, elem = p[:i], p[i+1:]
		} else {
			p, elem = "", p
		}
		elem = strings.TrimSuffix(elem, ".scope")
		if strings.HasPrefix(elem, "crio-conmon-") {
			continue // CRI-O's monitor process, not the container
		}
		for _, pre := range containerPrefixes {
			if strings.HasPrefix(elem, pre) {
				elem = elem[len(pre):]
				break
			}
		}
		if isHex64(elem) {
			return elem
		}
	}
	return ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
