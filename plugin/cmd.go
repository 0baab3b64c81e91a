package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
	"github.com/weirnet/weir/netconf"
)

// k8sArgs are the CNI_ARGS keys Kubernetes runtimes pass. Other runtimes
// pass some or none of them (podman: only K8S_POD_NAME), so every one is
// optional, and unknown keys are ignored. Field names are the CNI_ARGS keys
// themselves: types.LoadArgs matches keys to fields by name.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
}

func parseK8sArgs(s string) (*k8sArgs, error) {
	a := &k8sArgs{CommonArgs: types.CommonArgs{IgnoreUnknown: true}}
	if err := types.LoadArgs(s, a); err != nil {
		return nil, fmt.Errorf("parse CNI_ARGS: %w", err)
	}
	return a, nil
}

func loadConf(stdin []byte) (*netconf.NetConf, error) {
	conf, err := netconf.Parse(stdin)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	return conf, nil
}

// parsePrevResult returns the main plugin's result, which ADD and CHECK
// require: weir has nothing to enroll without it.
func parsePrevResult(conf *netconf.NetConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			"no prevResult: weir must be chained after a main plugin (such as bridge or ptp) in a conflist", "")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("prevResult: convert to CNI %s: %v", current.ImplementedSpecVersion, err), "")
	}
	return res, nil
}

// cmdAdd enrolls the attachment and passes the main plugin's result through.
func (p *plugin) cmdAdd(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	log, closeLog := p.openLog(conf, "ADD", args)
	defer closeLog()

	res, err := parsePrevResult(conf)
	if err != nil {
		log.Error("invalid prevResult", "err", err)
		return err
	}
	// Convert before enrolling, so a result we cannot print never leaves
	// an enrollment behind.
	out, err := conf.PrevResult.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion,
			fmt.Sprintf("convert prevResult to CNI %s: %v", conf.CNIVersion, err), "")
	}
	if err := p.enroll(ctx, log, conf, args, res); err != nil {
		return err
	}
	if err := out.PrintTo(p.stdout); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	return nil
}

func (p *plugin) enroll(ctx context.Context, log *slog.Logger, conf *netconf.NetConf, args *skel.CmdArgs, res *current.Result) error {
	k8s, err := parseK8sArgs(args.Args)
	if err != nil {
		return addFailure(log, conf, types.ErrInvalidEnvironmentVariables, err)
	}
	if ns := string(k8s.K8S_POD_NAMESPACE); conf.Excluded(ns) {
		log.Info("pod namespace is excluded: passing through without enrollment", "namespace", ns)
		return nil
	}
	link, err := inspectPodLink(args.Netns, args.IfName)
	if err != nil {
		return addFailure(log, conf, types.ErrInternal, fmt.Errorf("inspect pod network: %w", err))
	}
	if link.note != "" {
		log.Info("no host-side veth for the pod interface", "reason", link.note)
	}

	req := &enrollpb.EnrollRequest{Pod: &enrollpb.Pod{
		Network:          conf.Name,
		ContainerId:      args.ContainerID,
		Ifname:           args.IfName,
		Netns:            args.Netns,
		NetnsInode:       link.netnsInode,
		IfIndex:          int32(link.ifIndex),
		HostVeth:         link.hostVeth,
		HostVethIndex:    int32(link.hostVethIndex),
		Ips:              podIPs(res, args.IfName),
		Namespace:        validUTF8(string(k8s.K8S_POD_NAMESPACE)),
		Name:             validUTF8(string(k8s.K8S_POD_NAME)),
		Uid:              validUTF8(string(k8s.K8S_POD_UID)),
		InfraContainerId: validUTF8(string(k8s.K8S_POD_INFRA_CONTAINER_ID)),
		CniVersion:       conf.CNIVersion,
	}}
	err = callDaemon(ctx, conf, func(ctx context.Context, c enrollpb.EnrollmentClient) error {
		resp, err := c.Enroll(ctx, req)
		if err == nil {
			log.Info("enrolled", "podID", resp.GetPod().GetId(), "netnsInode", link.netnsInode,
				"hostVeth", link.hostVeth, "ips", addressList(req.Pod.Ips))
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case daemonUnreachable(err):
		if conf.FailurePolicy == netconf.FailurePolicyFail {
			log.Error("daemon unreachable: failing ADD (failurePolicy fail)", "err", err)
			return types.NewError(types.ErrTryAgainLater, err.Error(), "")
		}
		log.Warn("daemon unreachable: spooling the enrollment", "err", err)
		p.spool(log, conf, &enrollpb.SpoolRecord{Op: &enrollpb.SpoolRecord_Enroll{Enroll: req}})
		return nil
	default:
		// The daemon looked at the request and refused it: replaying it
		// later would be refused again, so it is never spooled.
		return addFailure(log, conf, types.ErrInternal, err)
	}
}

// validUTF8 replaces invalid UTF-8 in a CNI_ARGS value: protobuf strings
// must be UTF-8, and a runtime passing raw bytes in K8S_POD_NAME must not
// leave the pod unmonitored or unspoolable.
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// addFailure applies the failure policy to an ADD that cannot enroll the
// pod: with "fail" the pod's creation fails; with "ignore" it goes on
// unmonitored and the cause is only logged.
func addFailure(log *slog.Logger, conf *netconf.NetConf, code uint, err error) error {
	if conf.FailurePolicy == netconf.FailurePolicyFail {
		log.Error("cannot enroll pod: failing ADD (failurePolicy fail)", "err", err)
		return types.NewError(code, err.Error(), "")
	}
	log.Error("cannot enroll pod: passing through unmonitored (failurePolicy ignore)", "err", err)
	return nil
}

// spool queues rec for the daemon to replay. A spool that cannot take the
// record is logged, never returned: the command has already decided to
// succeed without the daemon.
func (p *plugin) spool(log *slog.Logger, conf *netconf.NetConf, rec *enrollpb.SpoolRecord) {
	rec.Time = timestamppb.New(p.now())
	path, err := spool.New(conf.SpoolDir, conf.SpoolMaxRecords).Write(rec)
	switch {
	case errors.Is(err, spool.ErrFull):
		log.Error("spool full: call dropped; the daemon's repair (enroll) or reconcile (unenroll) catches up",
			"spoolDir", conf.SpoolDir, "spoolMaxRecords", conf.SpoolMaxRecords)
	case err != nil:
		log.Error("spool write failed: call dropped", "spoolDir", conf.SpoolDir, "err", err)
	default:
		log.Info("spooled", "record", path)
	}
}

// cmdDel forgets the attachment. It always succeeds, under either failure
// policy and whatever the weir entry says: DEL must not block pod teardown,
// the runtime retries a failed DEL forever, and a failing chained plugin
// stops libcni before the main plugin frees the pod's address and veth. A
// weir entry that does not validate is parsed leniently (bad fields keep
// their defaults), the problem is logged, and the attachment is still
// unenrolled by container id and ifname. An unreachable daemon gets a
// spooled Unenroll under both policies; with "fail" the daemon may still
// hold an enrollment from before it went down, and an Unenroll replay is
// harmless because Unenroll is idempotent. The netns and pod may already be
// gone; DEL does not look at them.
func (p *plugin) cmdDel(ctx context.Context, args *skel.CmdArgs) error {
	conf, confErr := netconf.ParseLenient(args.StdinData)
	log, closeLog := p.openLog(conf, "DEL", args)
	defer closeLog()
	if confErr != nil {
		log.Warn("weir entry does not validate: unenrolling anyway with defaults for the bad fields", "err", confErr)
		fmt.Fprintf(p.stderr, "weir: DEL with an invalid configuration, unenrolling anyway: %v\n", confErr)
	}

	k8s, err := parseK8sArgs(args.Args)
	if err != nil {
		log.Warn("unparsable CNI_ARGS: unenrolling anyway", "err", err)
		k8s = &k8sArgs{}
	}
	// Excluded pods were never enrolled. If excludeNamespaces changed
	// since ADD, the daemon's reconcile drops the pod when its netns goes.
	if ns := string(k8s.K8S_POD_NAMESPACE); conf.Excluded(ns) {
		log.Debug("pod namespace is excluded: nothing to unenroll", "namespace", ns)
		return nil
	}

	// An empty network (stdin without a readable name) asks the daemon to
	// drop the attachment from every network.
	req := &enrollpb.UnenrollRequest{
		Network:    conf.Name,
		Attachment: &enrollpb.Attachment{ContainerId: args.ContainerID, Ifname: args.IfName},
	}
	err = callDaemon(ctx, conf, func(ctx context.Context, c enrollpb.EnrollmentClient) error {
		resp, err := c.Unenroll(ctx, req)
		if err == nil {
			log.Info("unenrolled", "found", resp.GetFound())
		}
		return err
	})
	switch {
	case err == nil:
	case daemonUnreachable(err):
		log.Warn("daemon unreachable: spooling the unenrollment", "err", err)
		p.spool(log, conf, &enrollpb.SpoolRecord{Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: req}})
	default:
		log.Error("daemon rejected the unenrollment: DEL succeeds anyway", "err", err)
	}
	return nil
}

// cmdCheck verifies that the daemon holds the attachment with the addresses
// the main plugin assigned.
func (p *plugin) cmdCheck(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	log, closeLog := p.openLog(conf, "CHECK", args)
	defer closeLog()

	res, err := parsePrevResult(conf)
	if err != nil {
		return err
	}
	k8s, err := parseK8sArgs(args.Args)
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
	}
	if conf.Excluded(string(k8s.K8S_POD_NAMESPACE)) {
		return nil
	}

	var pod *enrollpb.Pod
	err = callDaemon(ctx, conf, func(ctx context.Context, c enrollpb.EnrollmentClient) error {
		resp, err := c.Get(ctx, &enrollpb.GetRequest{
			Network:    conf.Name,
			Attachment: &enrollpb.Attachment{ContainerId: args.ContainerID, Ifname: args.IfName},
		})
		pod = resp.GetPod()
		return err
	})
	switch {
	case err == nil:
	case daemonUnreachable(err) && conf.FailurePolicy == netconf.FailurePolicyIgnore:
		log.Warn("daemon unreachable: CHECK passes (failurePolicy ignore)", "err", err)
		return nil
	case daemonUnreachable(err):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case status.Code(err) == codes.NotFound:
		return fmt.Errorf("attachment (container %s, ifname %s) of network %q is not enrolled with weir-daemon",
			args.ContainerID, args.IfName, conf.Name)
	default:
		return fmt.Errorf("check enrollment: %w", err)
	}

	want := podIPs(res, args.IfName)
	same, err := sameAddresses(pod.GetIps(), want)
	if err != nil {
		return fmt.Errorf("compare enrolled addresses: %w", err)
	}
	if !same {
		return fmt.Errorf("weir-daemon has addresses %q for attachment (container %s, ifname %s), prevResult has %q",
			addressList(pod.GetIps()), args.ContainerID, args.IfName, addressList(want))
	}
	if pod.GetNetns() != args.Netns {
		return fmt.Errorf("weir-daemon has netns %q for attachment (container %s, ifname %s), CNI_NETNS is %q",
			pod.GetNetns(), args.ContainerID, args.IfName, args.Netns)
	}
	return nil
}

// cmdStatus only validates the configuration. It never asks the daemon:
// containerd 2 and CRI-O mark the node's network not ready when any plugin
// fails STATUS, and Weir's daemon being down must not take a node out.
func (p *plugin) cmdStatus(_ context.Context, args *skel.CmdArgs) error {
	_, err := loadConf(args.StdinData)
	return err
}

// cmdGC forwards the runtime's list of valid attachments to the daemon,
// which drops every other attachment of this network. Like DEL it always
// succeeds: a daemon that is down reconciles on its own when it starts, an
// invalid weir entry is parsed leniently and logged, and a daemon that
// refuses the call is logged. Without a network name there is nothing to
// collect.
func (p *plugin) cmdGC(ctx context.Context, args *skel.CmdArgs) error {
	conf, confErr := netconf.ParseLenient(args.StdinData)
	log, closeLog := p.openLog(conf, "GC", args)
	defer closeLog()
	if confErr != nil {
		log.Warn("weir entry does not validate: collecting anyway with defaults for the bad fields", "err", confErr)
		fmt.Fprintf(p.stderr, "weir: GC with an invalid configuration: %v\n", confErr)
	}
	if conf.Name == "" {
		log.Warn("no network name: GC skipped")
		return nil
	}

	req := &enrollpb.GCRequest{Network: conf.Name}
	for _, a := range conf.ValidAttachments {
		req.ValidAttachments = append(req.ValidAttachments,
			&enrollpb.Attachment{ContainerId: a.ContainerID, Ifname: a.IfName})
	}
	err := callDaemon(ctx, conf, func(ctx context.Context, c enrollpb.EnrollmentClient) error {
		resp, err := c.GC(ctx, req)
		if err == nil {
			log.Info("garbage collected", "valid", len(req.ValidAttachments), "removed", resp.GetRemovedCount())
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case daemonUnreachable(err):
		log.Warn("daemon unreachable: GC skipped", "err", err)
		return nil
	default:
		log.Error("daemon rejected the GC: GC succeeds anyway", "err", err)
		return nil
	}
}
