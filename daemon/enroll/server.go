// Package enroll is the gRPC enrollment service on weir-daemon's unix socket.
//
// The weir CNI plugin calls it from CNI ADD, DEL and GC to keep the daemon's
// pod registry in step with the pods on the node. The service validates each
// call (a half-filled record would make the eBPF side watch the wrong network
// namespace, or none), maps it onto the registry, and acknowledges only once
// the registry has persisted the change.
//
// The package also owns the two other ways the registry learns about pods
// outside a live RPC: replaying the plugin's spool (Apply) and dropping pods
// whose network namespace is gone (Reconcile), and the socket listener that
// admits only trusted peers (Listen).
package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/daemon/enroll/enrollpb"
	"github.com/weirnet/weir/daemon/enroll/spool"
	"github.com/weirnet/weir/daemon/registry"
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

	reg *registry.Registry
	log *slog.Logger
}

// NewServer returns the enrollment service for reg.
func NewServer(reg *registry.Registry, log *slog.Logger) *Server {
	return &Server{reg: reg, log: log}
}

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
// same attachment (its id is kept).
func (s *Server) Enroll(_ context.Context, req *enrollpb.EnrollRequest) (*enrollpb.EnrollResponse, error) {
	if err := ValidatePod(req.GetPod()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p, err := s.reg.Enroll(req.GetPod())
	if err != nil {
		if errors.Is(err, registry.ErrFull) {
			st := s.reg.Stats()
			s.log.Warn("pod registry is full; enrollment refused", append(podAttrs(req.GetPod()),
				"maxPods", st.MaxPods, "refusedSoFar", st.FullRejections)...)
		}
		return nil, registryError(err)
	}
	s.log.Info("pod enrolled", podAttrs(p)...)
	return &enrollpb.EnrollResponse{Pod: p}, nil
}

// Unenroll forgets an attachment; an unknown one answers found=false.
func (s *Server) Unenroll(_ context.Context, req *enrollpb.UnenrollRequest) (*enrollpb.UnenrollResponse, error) {
	k, err := attachmentKey(req.GetNetwork(), req.GetAttachment())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p, err := s.reg.Remove(k)
	if err != nil {
		return nil, registryError(err)
	}
	if p == nil {
		s.log.Debug("unenroll of unknown attachment", "attachment", k.String())
		return &enrollpb.UnenrollResponse{Found: false}, nil
	}
	s.log.Info("pod unenrolled", podAttrs(p)...)
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
	return &enrollpb.GetResponse{Pod: p}, nil
}

// List returns every attachment, ordered by id.
func (s *Server) List(context.Context, *enrollpb.ListRequest) (*enrollpb.ListResponse, error) {
	return &enrollpb.ListResponse{Pods: s.reg.List()}, nil
}

// GC drops the network's attachments that are not in the valid set.
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
	for _, p := range removed {
		s.log.Info("pod removed by CNI GC", podAttrs(p)...)
	}
	return &enrollpb.GCResponse{Removed: removed}, nil
}

// Apply replays one spooled plugin call through the same validation as the
// RPCs. A record that fails validation is wrapped in spool.ErrRejected so
// that Drain moves it aside instead of retrying it forever.
func (s *Server) Apply(ctx context.Context, rec *enrollpb.SpoolRecord) error {
	var err error
	switch op := rec.GetOp().(type) {
	case *enrollpb.SpoolRecord_Enroll:
		_, err = s.Enroll(ctx, op.Enroll)
	case *enrollpb.SpoolRecord_Unenroll:
		_, err = s.Unenroll(ctx, op.Unenroll)
	default:
		return fmt.Errorf("spool record has no operation: %w", spool.ErrRejected)
	}
	if status.Code(err) == codes.InvalidArgument {
		return fmt.Errorf("%w: %v", spool.ErrRejected, status.Convert(err).Message())
	}
	return err
}

// ValidatePod returns an error naming the first missing or malformed field
// of p, using the proto field names the plugin author sees.
func ValidatePod(p *enrollpb.Pod) error {
	switch {
	case p == nil:
		return errors.New("pod is required")
	case p.GetNetwork() == "":
		return errors.New("pod.network is required")
	case p.GetContainerId() == "":
		return errors.New("pod.container_id is required")
	case p.GetIfname() == "":
		return errors.New("pod.ifname is required")
	case p.GetNetns() == "":
		return errors.New("pod.netns is required")
	case p.GetNetnsInode() == 0:
		return errors.New("pod.netns_inode must be non-zero (the inode of the netns file)")
	case p.GetIfIndex() < 0:
		return fmt.Errorf("pod.if_index must not be negative, got %d", p.GetIfIndex())
	case p.GetHostVethIndex() < 0:
		return fmt.Errorf("pod.host_veth_index must not be negative, got %d", p.GetHostVethIndex())
	}
	for i, ip := range p.GetIps() {
		if _, err := netip.ParsePrefix(ip.GetAddress()); err != nil {
			return fmt.Errorf("pod.ips[%d].address %q is not a CIDR address: %v", i, ip.GetAddress(), err)
		}
		if gw := ip.GetGateway(); gw != "" {
			if _, err := netip.ParseAddr(gw); err != nil {
				return fmt.Errorf("pod.ips[%d].gateway %q is not an IP address: %v", i, gw, err)
			}
		}
	}
	return nil
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

func podAttrs(p *enrollpb.Pod) []any {
	return []any{
		"id", p.GetId(), "network", p.GetNetwork(), "containerID", p.GetContainerId(), "ifname", p.GetIfname(),
		"namespace", p.GetNamespace(), "name", p.GetName(), "netnsInode", p.GetNetnsInode(),
	}
}
