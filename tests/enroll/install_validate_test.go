package enroll

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/tests/harness"
)

// runInstall runs the weir-install binary against confDir.
func runInstall(t *testing.T, bins harness.Binaries, confDir string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"--plugin-src", bins.CNIPath("weir"), "--cni-bin-dir", t.TempDir(), "--cni-conf-dir", confDir}, extra...)
	out, err := exec.CommandContext(ctxFor(t, 30*time.Second), bins.Path("weir-install"), args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run weir-install: %v", err)
	}
	return 0, string(out)
}

// Item 5: a conflist whose plugins list is empty is refused and left as it
// was; the same file with a main plugin gets weir chained after it, with
// the daemon's socket and spool read from the daemon's config file, and
// libcni then enrolls pods with that daemon.
func TestWeirInstallRefusesAListWithoutMainPluginAndChainsWithTheDaemonsValues(t *testing.T) {
	harness.RequireRoot(t)
	f := newFixture(t, fixtureOptions{startDaemon: true})
	bins := harness.FindBinaries(t, []string{"weir-install"}, nil)
	confDir := t.TempDir()
	path := filepath.Join(confDir, "10-net.conflist")
	empty := []byte(`{"cniVersion":"1.0.0","name":"net","plugins":[]}`)
	if err := os.WriteFile(path, empty, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runInstall(t, bins, confDir)
	if code != 1 || !strings.Contains(out, "no main plugin") {
		t.Fatalf("weir-install on an empty plugin list: exit %d, output:\n%s\nwant exit 1 naming the problem", code, out)
	}
	if got, _ := os.ReadFile(path); string(got) != string(empty) {
		t.Fatalf("the refused file was changed:\n%s", got)
	}

	// The network's bridge entry alone, then weir-install with the daemon's config.
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	mustUnmarshal(t, f.net.List.Bytes, &list)
	bridgeOnly := mustMarshal(t, map[string]any{"cniVersion": f.net.List.CNIVersion, "name": f.net.Name, "plugins": list.Plugins[:1]})
	if err := os.WriteFile(path, bridgeOnly, 0o644); err != nil {
		t.Fatal(err)
	}
	daemonConf := filepath.Join(t.TempDir(), "daemon.yaml")
	if err := os.WriteFile(daemonConf, []byte("socket: "+f.daemon.Socket+"\nstateDir: "+f.daemon.StateDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runInstall(t, bins, confDir, "--daemon-config", daemonConf); code != 0 {
		t.Fatalf("weir-install --daemon-config: exit %d\n%s", code, out)
	}
	installed, err := libcni.ConfListFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.net.List = installed
	p := f.net.AddPod(t, harness.PodSpec{Namespace: "team", Name: "installed"})
	f.waitExactly(t, p)
}

// Item 6: the enrollment service refuses what a root caller could send to
// make it watch the wrong thing or grow without bound, with a clear
// InvalidArgument (or AlreadyExists for another pod's address). The base
// record is a real pod's, enrolled by libcni.
func TestEnrollRefusesRecordsThatDoNotDescribeAPod(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	real := f.net.AddPod(t, harness.PodSpec{Namespace: "team", Name: "real"})
	other := f.net.NewPod(t, harness.PodSpec{Namespace: "team", Name: "fake"})
	f.waitExactly(t, real)

	conn, err := grpc.NewClient("unix://"+f.daemon.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := enrollpb.NewEnrollmentClient(conn)
	ctx := ctxFor(t, 30*time.Second)
	got, err := c.Get(ctx, &enrollpb.GetRequest{Network: f.net.Name, Attachment: &enrollpb.Attachment{ContainerId: real.ContainerID, Ifname: "eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	ino, err := harness.Inode(other.NS.Path)
	if err != nil {
		t.Fatal(err)
	}
	base := func() *enrollpb.Pod {
		return &enrollpb.Pod{Network: f.net.Name, ContainerId: other.ContainerID, Ifname: "eth0",
			Netns: other.NS.Path, NetnsInode: ino, Namespace: "team", Name: "fake",
			Ips: []*enrollpb.IPConfig{{Address: "10.255.0.9/24"}}}
	}
	hostIno, err := harness.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	many := make([]*enrollpb.IPConfig, 20000)
	for i := range many {
		many[i] = &enrollpb.IPConfig{Address: "fd00:9::" + strconvHex(i+1) + "/64"}
	}
	cases := []struct {
		name string
		edit func(*enrollpb.Pod)
		code codes.Code
		msg  string
	}{
		{"relative netns", func(p *enrollpb.Pod) { p.Netns = "var/run/netns/x" }, codes.InvalidArgument, "absolute"},
		{"host netns", func(p *enrollpb.Pod) { p.Netns, p.NetnsInode = "/proc/self/ns/net", hostIno }, codes.InvalidArgument, "own (host) network namespace"},
		{"not a namespace", func(p *enrollpb.Pod) { p.Netns = "/etc/hostname" }, codes.InvalidArgument, "not a network namespace"},
		{"veth index MaxInt32", func(p *enrollpb.Pod) { p.HostVethIndex = math.MaxInt32 }, codes.InvalidArgument, "host_veth_index"},
		{"20000 IPs", func(p *enrollpb.Pod) { p.Ips = many }, codes.InvalidArgument, "at most 16"},
		{"900 KB name", func(p *enrollpb.Pod) { p.Name = strings.Repeat("n", 900<<10) }, codes.InvalidArgument, "pod.name"},
		{"another pod's IP", func(p *enrollpb.Pod) { p.Ips = got.GetPod().GetIps() }, codes.AlreadyExists, real.ContainerID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.edit(p)
			_, err := c.Enroll(ctx, &enrollpb.EnrollRequest{Pod: p}, grpc.MaxCallSendMsgSize(4<<20))
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("Enroll = %v, want %s mentioning %q", err, tc.code, tc.msg)
			}
		})
	}
	// Unenrolling the refused fake leaves the real pod and its address alone.
	if _, err := c.Unenroll(ctx, &enrollpb.UnenrollRequest{Network: f.net.Name, Attachment: &enrollpb.Attachment{ContainerId: other.ContainerID, Ifname: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	recs := f.waitExactly(t, real)
	assertIPs(t, mustRecord(t, recs, real), real)
	// The registry file stayed small: nothing refused was written.
	if fi, err := os.Stat(filepath.Join(f.daemon.StateDir, "pods.json")); err != nil || fi.Size() > 8<<10 {
		t.Errorf("pods.json: %v, size %d; want a few KB", err, fi.Size())
	}
	for reason, want := range map[string]float64{"invalid": 3, "netns": 2, "host_link": 1, "ip_in_use": 1} {
		if v := metricValue(t, f.daemon, `weir_enroll_refused_total{reason="`+reason+`"}`); v != want {
			t.Errorf("weir_enroll_refused_total{reason=%q} = %v, want %v", reason, v, want)
		}
	}
}

func strconvHex(i int) string { return strconv.FormatInt(int64(i), 16) }

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
