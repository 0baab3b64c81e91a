// Command podctl attaches and detaches demo "pods" (named network
// namespaces) through the CNI chain in a conf dir, with libcni, exactly as a
// container runtime would: it loads the first network config in the dir
// (the one weir-install patched) and passes the K8S_POD_* CNI_ARGS a
// kubelet-driven runtime sends. It exists so `make demo` can show Weir
// enrolling pods on a machine without Kubernetes.
//
//	podctl add --conf-dir D --bin-dir B --cache-dir C --netns NAME --namespace NS --name POD
//	podctl del (same flags)
//
// The netns name doubles as the CNI container ID, so del needs no state.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
)

type options struct {
	confDir, binDir, cacheDir   string
	netns, namespace, name, uid string
	timeout                     time.Duration
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "podctl:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "del") {
		return errors.New("usage: podctl add|del --conf-dir D --bin-dir B --cache-dir C --netns NAME --namespace NS --name POD")
	}
	cmd := args[0]
	var o options
	fs := flag.NewFlagSet("podctl "+cmd, flag.ContinueOnError)
	fs.StringVar(&o.confDir, "conf-dir", "", "CNI config dir; its first config (by file name) is used")
	fs.StringVar(&o.binDir, "bin-dir", "", "CNI plugin binary dir")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "libcni result cache dir")
	fs.StringVar(&o.netns, "netns", "", "name of the network namespace under /run/netns (also the container ID)")
	fs.StringVar(&o.namespace, "namespace", "default", "K8S_POD_NAMESPACE")
	fs.StringVar(&o.name, "name", "", "K8S_POD_NAME (default: the netns name)")
	fs.StringVar(&o.uid, "uid", "", "K8S_POD_UID (default: derived from the netns name)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound of the whole CNI call")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	for flagName, v := range map[string]string{"conf-dir": o.confDir, "bin-dir": o.binDir, "cache-dir": o.cacheDir, "netns": o.netns} {
		if v == "" {
			return fmt.Errorf("--%s is required", flagName)
		}
	}
	if o.name == "" {
		o.name = o.netns
	}
	if o.uid == "" {
		sum := sha256.Sum256([]byte(o.netns))
		o.uid = hex.EncodeToString(sum[:16])
	}

	files, err := libcni.ConfFiles(o.confDir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return fmt.Errorf("list CNI configs in %s: %w", o.confDir, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("no CNI config in %s", o.confDir)
	}
	list, err := libcni.NetworkConfFromFile(files[0])
	if err != nil {
		return fmt.Errorf("load %s: %w", files[0], err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{o.binDir}, o.cacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID: o.netns,
		NetNS:       filepath.Join("/run/netns", o.netns),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", o.namespace},
			{"K8S_POD_NAME", o.name},
			{"K8S_POD_INFRA_CONTAINER_ID", o.netns},
			{"K8S_POD_UID", o.uid},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

	if cmd == "del" {
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			return fmt.Errorf("CNI DEL of %s on network %q: %w", o.netns, list.Name, err)
		}
		return nil
	}
	res, err := cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return fmt.Errorf("CNI ADD of %s on network %q: %w", o.netns, list.Name, err)
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("convert ADD result: %w", err)
	}
	ips := make([]string, 0, len(cur.IPs))
	for _, ip := range cur.IPs {
		ips = append(ips, ip.Address.String())
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"network": list.Name, "netns": o.netns, "namespace": o.namespace, "name": o.name, "ips": ips,
	})
}
