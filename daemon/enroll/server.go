// Package enroll is the gRPC enrollment service on weir-daemon's unix socket:
// the daemon's side of the contract in package enrollapi (the API in
// enrollapi/enrollpb, the spool format in enrollapi/spool).
//
// The weir CNI plugin calls it from CNI ADD, DEL and GC to keep the daemon's
// pod registry in step with the pods on the node. The service validates each
// call (a half-filled record would make the eBPF side watch the wrong network
// namespace, or none), maps it onto the registry, and acknowledges only once
// the registry has persisted the change.
//
// The package also owns the other ways the registry learns about pods
// outside a live RPC: replaying the plugin's spool in the order the calls
// were made, unless a newer live call superseded them (Apply), dropping pods
// whose network namespace is gone (Reconcile), and enrolling pods the node
// runs that never reached the registry (Repair); the check that the
// installed weir entries name this daemon (CheckInstalled); and the socket
// listener that admits only trusted peers (Listen).
package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
)

// Bounds of the gRPC server. Enrollment messages are small (one pod record);
// the plugin makes one call per CNI operation.
const (
	MaxMessageBytes      = 1 << 20
	MaxConcurrentStreams = 64
)

// Server implements enrollpb.EnrollmentServer over a registry.
type Server struct {
	enrollpb.UnimplementedEnrollmentServer

	reg     *registry.Registry
	log     *slog.Logger
	host    Host
	now     func() time.Time
	metrics *Metrics
	order   *order
	// criDown remembers that repair's last CRI call failed, so the
	// warning is logged once per outage.
	criDown atomic.Bool
}

// ServerOptions configures NewServer. The zero value is the production
// setup.
type ServerOptions struct {
	// Host checks pod records against the node; nil means NodeHost.
	Host Host
	// Metrics receives the service's counters; nil means NewMetrics().
	Metrics *Metrics
	// Now is the clock live calls are ordered by; nil means time.Now. It
	// must be the clock the plugin stamps spool records with.
	Now func() time.Time
}

// NewServer returns the enrollment service for reg.
func NewServer(reg *registry.Registry, log *slog.Logger, opts ServerOptions) *Server {
	s := &Server{reg: reg, log: log, host: opts.Host, now: opts.Now, metrics: opts.Metrics, order: newOrder(maxOrderEntries)}
	if s.host == nil {
		s.host = NodeHost{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	return s
}

// Metrics returns the service's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// NewGRPCServer returns a gRPC server with the enrollment service registered
// and the package's bounds applied. Serve it on a listener from Listen.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
	}, opts...)
	g := grpc.NewServer(opts...)
	enrollpb.RegisterEnrollmentServer(g, s)
	return g
}

// Enroll validates and stores the pod, replacing an earlier record of the
// same attachment (its id is kept). A call whose caller already gave up
// (its deadline passed while it waited, say, behind a stopped daemon) is
// not applied: the plugin has spooled it, and ordering decides its fate.
func (s *Server) Enroll(ctx context.Context, req *enrollpb.EnrollRequest) (*enrollpb.EnrollResponse, error) {
	if err := ctx.Err(); err != nil {
		s.metrics.Refused.WithLabelValues(ReasonAbandoned).Inc()
		return nil, status.FromContextError(err).Err()
	}
	p, err := s.enroll(req.GetPod(), true)
	if err != nil {
		return nil, err
	}
	s.order.note(attachmentOf(p.ContainerID, p.Ifname), s.now(), true)
	s.log.Info("pod enrolled", podAttrs(p)...)
	return &enrollpb.EnrollResponse{Pod: p.Proto()}, nil
}

// enroll validates req, checks it against the node and stores it: the
// enrollment contract's record becomes the daemon's registry.Pod here, once.
// Refusals are logged and, when count is set, counted by reason. The error
// is a gRPC status; one wrapping ErrNetnsGone keeps that sentinel reachable.
func (s *Server) enroll(req *enrollpb.Pod, count bool) (*registry.Pod, error) {
	p := registry.PodFromProto(req)
	refuse := func(reason string, code codes.Code, err error) error {
		if count {
			s.metrics.Refused.WithLabelValues(reason).Inc()
			s.log.Warn("enrollment refused", append(podAttrs(p), "reason", reason, "error", err)...)
		}
		return &refusal{st: status.New(code, err.Error()), err: err}
	}
	if err := ValidatePod(req); err != nil {
		return nil, refuse(ReasonInvalid, codes.InvalidArgument, err)
	}
	if err := s.host.CheckNetns(p.Netns, p.NetnsInode); err != nil {
		return nil, refuse(ReasonNetns, codes.InvalidArgument, err)
	}
	if p.HostVethIndex != 0 {
		if err := s.host.CheckHostLink(p.HostVethIndex, p.HostVeth); err != nil {
			return nil, refuse(ReasonLink, codes.InvalidArgument, err)
		}
	}
	stored, err := s.reg.Enroll(p)
	var inUse *registry.IPInUseError
	if errors.As(err, &inUse) && s.dropIfGone(inUse.Owner) {
		stored, err = s.reg.Enroll(p)
	}
	switch {
	case err == nil:
		return stored, nil
	case errors.Is(err, registry.ErrFull):
		st := s.reg.Stats()
		return nil, refuse(ReasonRegistryFull, codes.ResourceExhausted,
			fmt.Errorf("%w (maxPods %d); repair enrolls the pod once a slot frees", err, st.MaxPods))
	case errors.As(err, &inUse):
		return nil, refuse(ReasonIPInUse, codes.AlreadyExists, err)
	case errors.Is(err, registry.ErrTooLarge):
		return nil, refuse(ReasonTooLarge, codes.ResourceExhausted, err)
	default:
		return nil, refuse(ReasonInternal, codes.Internal, err)
	}
}

// dropIfGone removes owner if its network namespace is gone: its address
// was handed out again after a DEL the daemon never saw. It reports
// whether owner was removed.
func (s *Server) dropIfGone(owner *registry.Pod) bool {
	gone, why, err := netnsGone(owner.Netns, owner.NetnsInode)
	if err != nil || !gone {
		return false
	}
	removed, err := s.reg.RemoveIf(func(p *registry.Pod) bool {
		return registry.KeyOf(p) == registry.KeyOf(owner) && p.NetnsInode == owner.NetnsInode
	})
	if err != nil || len(removed) == 0 {
		return false
	}
	s.log.Info("removed a pod whose netns is gone: its address was enrolled again", append(podAttrs(owner), "reason", why)...)
	return true
}

// refusal is a gRPC status that still unwraps to the cause.
type refusal struct {
	st  *status.Status
	err error
}

func (r *refusal) Error() string              { return r.st.Err().Error() }
func (r *refusal) GRPCStatus() *status.Status { return r.st }
func (r *refusal) Unwrap() error              { return r.err }

// Unenroll forgets an attachment; an unknown one answers found=false. An
// empty network drops the attachment (container id, ifname) from every
// network: the plugin sends that from a DEL whose configuration has no
// readable network name, which must still unenroll the pod.
func (s *Server) Unenroll(ctx context.Context, req *enrollpb.UnenrollRequest) (*enrollpb.UnenrollResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	resp, err := s.unenroll(req)
	if err == nil {
		a := req.GetAttachment()
		s.order.note(attachmentOf(a.GetContainerId(), a.GetIfname()), s.now(), false)
	}
	return resp, err
}

func (s *Server) unenroll(req *enrollpb.UnenrollRequest) (*enrollpb.UnenrollResponse, error) {
	network := req.GetNetwork()
	anyNetwork := network == ""
	if anyNetwork {
		network = "*"
	}
	k, err := attachmentKey(network, req.GetAttachment())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	removed, err := s.reg.RemoveIf(func(p *registry.Pod) bool {
		pk := registry.KeyOf(p)
		return pk.ContainerID == k.ContainerID && pk.Ifname == k.Ifname && (anyNetwork || pk.Network == k.Network)
	})
	if err != nil {
		return nil, registryError(err)
	}
	if len(removed) == 0 {
		s.log.Debug("unenroll of unknown attachment", "attachment", k.String())
		return &enrollpb.UnenrollResponse{Found: false}, nil
	}
	for _, p := range removed {
		s.log.Info("pod unenrolled", podAttrs(p)...)
	}
	return &enrollpb.UnenrollResponse{Found: true}, nil
}

// Get returns one attachment, or NOT_FOUND.
func (s *Server) Get(_ context.Context, req *enrollpb.GetRequest) (*enrollpb.GetResponse, error) {
	k, err := attachmentKey(req.GetNetwork(), req.GetAttachment())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p, ok := s.reg.Get(k)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "attachment %s is not enrolled", k)
	}
	return &enrollpb.GetResponse{Pod: p.Proto()}, nil
}

// List returns every attachment, ordered by id.
func (s *Server) List(context.Context, *enrollpb.ListRequest) (*enrollpb.ListResponse, error) {
	pods := s.reg.List()
	resp := &enrollpb.ListResponse{Pods: make([]*enrollpb.Pod, 0, len(pods))}
	for _, p := range pods {
		resp.Pods = append(resp.Pods, p.Proto())
	}
	return resp, nil
}

// GC drops the network's attachments that are not in the valid set. The
// reply lists at most MaxGCRemovedListed of them (a GC after a mass
// eviction must not outgrow the client's message limit); removed_count
// always has the total.
func (s *Server) GC(_ context.Context, req *enrollpb.GCRequest) (*enrollpb.GCResponse, error) {
	if req.GetNetwork() == "" {
		return nil, status.Error(codes.InvalidArgument, "network is required")
	}
	valid := make([]registry.Key, 0, len(req.GetValidAttachments()))
	for i, a := range req.GetValidAttachments() {
		k, err := attachmentKey(req.GetNetwork(), a)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "valid_attachments[%d]: %v", i, err)
		}
		valid = append(valid, k)
	}
	removed, err := s.reg.GC(req.GetNetwork(), valid)
	if err != nil {
		return nil, registryError(err)
	}
	now := s.now()
	for _, p := range removed {
		s.order.note(attachmentOf(p.ContainerID, p.Ifname), now, false)
		s.log.Info("pod removed by CNI GC", podAttrs(p)...)
	}
	resp := &enrollpb.GCResponse{RemovedCount: uint32(len(removed))}
	for _, p := range removed[:min(len(removed), MaxGCRemovedListed)] {
		resp.Removed = append(resp.Removed, p.Proto())
	}
	return resp, nil
}

// Apply replays one spooled plugin call through the same validation as the
// RPCs, unless a live call for the same attachment was applied after the
// record was made: that newer call wins (a spooled ADD must not resurrect a
// pod a live DEL removed, nor a spooled DEL remove a pod a live ADD
// enrolled again). A record that fails validation is wrapped in
// spool.ErrRejected so that Drain moves it aside instead of retrying it
// forever. An enrollment that cannot apply any more (netns gone, registry
// full) is dropped and counted; repair enrolls a pod that still lives.
func (s *Server) Apply(_ context.Context, rec *enrollpb.SpoolRecord) error {
	var a attachment
	switch op := rec.GetOp().(type) {
	case *enrollpb.SpoolRecord_Enroll:
		a = attachmentOf(op.Enroll.GetPod().GetContainerId(), op.Enroll.GetPod().GetIfname())
	case *enrollpb.SpoolRecord_Unenroll:
		a = attachmentOf(op.Unenroll.GetAttachment().GetContainerId(), op.Unenroll.GetAttachment().GetIfname())
	default:
		return fmt.Errorf("spool record has no operation: %w", spool.ErrRejected)
	}
	if live, ok := s.order.newer(a, rec.GetTime().AsTime()); ok {
		s.metrics.Superseded.Inc()
		s.log.Info("spooled call skipped: a newer live call for the attachment was applied",
			"containerID", a.containerID, "ifname", a.ifname, "recordTime", rec.GetTime().AsTime(),
			"liveCallTime", live.at, "liveEnrolled", live.enrolled)
		return nil
	}
	var err error
	switch op := rec.GetOp().(type) {
	case *enrollpb.SpoolRecord_Enroll:
		var p *registry.Pod
		p, err = s.enroll(op.Enroll.GetPod(), true)
		switch {
		case err == nil:
			s.log.Info("pod enrolled from the spool", podAttrs(p)...)
		case errors.Is(err, ErrNetnsGone), status.Code(err) == codes.ResourceExhausted:
			s.metrics.SpoolDropped.Inc()
			s.log.Info("spooled enrollment dropped", append(podAttrs(registry.PodFromProto(op.Enroll.GetPod())), "error", err)...)
			return nil
		}
	case *enrollpb.SpoolRecord_Unenroll:
		_, err = s.unenroll(op.Unenroll)
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.AlreadyExists:
		return fmt.Errorf("%w: %v", spool.ErrRejected, status.Convert(err).Message())
	}
	return err
}

// PruneOrder forgets live calls no spooled record can predate any more;
// call it after a Drain that started at drainStart applied everything.
func (s *Server) PruneOrder(drainStart time.Time) { s.order.prune(drainStart) }

func attachmentOf(containerID, ifname string) attachment {
	return attachment{containerID: containerID, ifname: ifname}
}

func attachmentKey(network string, a *enrollpb.Attachment) (registry.Key, error) {
	switch {
	case network == "":
		return registry.Key{}, errors.New("network is required")
	case a == nil:
		return registry.Key{}, errors.New("attachment is required")
	case a.GetContainerId() == "":
		return registry.Key{}, errors.New("attachment.container_id is required")
	case a.GetIfname() == "":
		return registry.Key{}, errors.New("attachment.ifname is required")
	}
	return registry.Key{Network: network, ContainerID: a.GetContainerId(), Ifname: a.GetIfname()}, nil
}

func registryError(err error) error {
	if errors.Is(err, registry.ErrFull) {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func podAttrs(p *registry.Pod) []any {
	return []any{
		"id", p.ID, "network", p.Network, "containerID", p.ContainerID, "ifname", p.Ifname,
		"namespace", p.Namespace, "name", p.Name, "netnsInode", p.NetnsInode,
	}
}
