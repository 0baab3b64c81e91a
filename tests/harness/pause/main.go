// Command pause is the sandbox ("pause") process of the pod images the CRI
// suite builds: it holds the pod's namespaces open and does nothing else.
// Test machines cannot pull registry.k8s.io/pause, so the suite builds this
// static binary and packs it into a local OCI image instead.
//
// As PID 1 of the pod's PID namespace it reaps any re-parented children, and
// it exits cleanly on SIGTERM/SIGINT so StopPodSandbox is quick.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
