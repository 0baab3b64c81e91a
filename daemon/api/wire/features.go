package wire

// Features is GET /api/v1/features: what this node's kernel lets the
// daemon measure.
type Features struct {
	// Capture says whether eBPF capture runs; Reason says why not.
	Capture bool   `json:"capture"`
	Reason  string `json:"reason,omitempty"`
	// Payload says whether payload is copied for protocol parsing; false
	// (bpf.payload=false) leaves connections and kernel metrics only.
	Payload bool `json:"payload"`
	// CaptureTier is where payload and connections are captured
	// ("socket" or "syscall"), CaptureTierReason why that one.
	CaptureTier       string `json:"captureTier,omitempty"`
	CaptureTierReason string `json:"captureTierReason,omitempty"`
	// Tier is the richest hook tier attached ("base", "fentry", "kprobe").
	Tier string `json:"tier,omitempty"`
	// TierError says why a richer tier the kernel offers is not in use.
	TierError string         `json:"tierError,omitempty"`
	Tiers     []TierStatus   `json:"tiers"`
	Hooks     []HookStatus   `json:"hooks"`
	Metrics   []MetricStatus `json:"metrics"`
	// TLS lists the TLS library files probed for plaintext and those
	// found but not probed; nil when TLS capture is not loaded.
	TLS *TLSFeatures `json:"tls,omitempty"`
}

// TLSFeatures is the TLS gate's state.
type TLSFeatures struct {
	Libraries []TLSLibrary  `json:"libraries"`
	Unprobed  []TLSUnprobed `json:"unprobed,omitempty"`
}

// TLSLibrary is one probed library file (uprobes are per file).
type TLSLibrary struct {
	Path    string   `json:"path"`
	Library string   `json:"library"` // "openssl", "boringssl", "go"
	Inode   uint64   `json:"inode"`
	Symbols []string `json:"symbols"` // functions probed, entry and return
	Users   []string `json:"users"`   // enrolled pods' namespaces using it
}

// TLSUnprobed is a TLS library file found but not probed, and why.
type TLSUnprobed struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// TierStatus is the probe result of one hook tier.
type TierStatus struct {
	Tier      string `json:"tier"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// HookStatus says whether one hook is attached and, if not, why.
type HookStatus struct {
	Name      string `json:"name"`
	Tier      string `json:"tier"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// MetricStatus says whether one kernel metric is measured on this node;
// Reason says why not, or what limits it.
type MetricStatus struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// SkyWalking names the access-log fields the metric fills and, when
	// it is not measured, whether the OAP gets them as 0 (averaged in) or
	// not at all.
	SkyWalking string `json:"skywalking,omitempty"`
}
