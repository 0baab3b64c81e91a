package enroll

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRITimeout bounds each CRI call repair makes.
const CRITimeout = 5 * time.Second

// CRISandboxes lists pod sandboxes through a CRI runtime socket
// (containerd, CRI-O) for repair.
type CRISandboxes struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
}

// NewCRISandboxes returns a lister for the runtime at socket. It connects
// lazily, so a runtime that starts after the daemon is fine; Close it when
// done.
func NewCRISandboxes(socket string) (*CRISandboxes, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("cri sandboxes: client for %s: %w", socket, err)
	}
	return &CRISandboxes{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *CRISandboxes) Close() error { return c.conn.Close() }

// Ready implements Sandboxes.
func (c *CRISandboxes) Ready(ctx context.Context) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, CRITimeout)
	defer cancel()
	resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		return nil, fmt.Errorf("cri ListPodSandbox: %w", err)
	}
	out := make(map[string]bool, len(resp.GetItems()))
	for _, s := range resp.GetItems() {
		out[s.GetId()] = true
	}
	return out, nil
}

// Netns implements Sandboxes: the network namespace path from the
// sandbox's runtime spec, which containerd and CRI-O report in the verbose
// status ("info").
func (c *CRISandboxes) Netns(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CRITimeout)
	defer cancel()
	resp, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		return "", fmt.Errorf("cri PodSandboxStatus %s: %w", id, err)
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		return "", fmt.Errorf("cri PodSandboxStatus %s: decode info: %w", id, err)
	}
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			return ns.Path, nil
		}
	}
	return "", fmt.Errorf("cri PodSandboxStatus %s: no network namespace in the runtime spec", id)
}
