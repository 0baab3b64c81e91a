package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runAsPluginEnv makes the test binary run main() instead of the tests, so
// tests can drive the real skel dispatch (env parsing, version checks,
// error JSON on stdout, exit codes) without building bin/weir.
const runAsPluginEnv = "WEIR_TEST_RUN_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsPluginEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// execPlugin runs this test binary as the weir plugin with CNI env and stdin.
func execPlugin(t *testing.T, command, netnsPath string, conf map[string]any, cniArgs string) (stdout []byte, exitCode int) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{
		runAsPluginEnv + "=1",
		"GORACE=atexit_sleep_ms=0", // under -race, exit without the default 1s pause
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=c0ffee",
		"CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin",
		"CNI_ARGS=" + cniArgs,
	}
	cmd.Stdin = bytes.NewReader(mustJSON(t, conf))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("plugin %s did not finish in 30s", command)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		exitCode = exitErr.ExitCode()
	default:
		t.Fatalf("run plugin: %v", err)
	}
	if errOut.Len() != 0 {
		t.Logf("plugin stderr: %s", errOut.Bytes())
	}
	return out.Bytes(), exitCode
}

func TestBinaryAddPrintsExactlyPrevResultWhenDaemonIsDown(t *testing.T) {
	pn := newPodNet(t)
	e := newEnv(t)
	conf := netConf("1.1.0", deadSocket(t), e.spoolDir)
	prev := prevResult110(pn.ns.Path())
	conf["prevResult"] = prev

	stdout, code := execPlugin(t, "ADD", pn.ns.Path(), conf, k8sCNIArgs)
	if code != 0 {
		t.Fatalf("exit code %d, stdout %s", code, stdout)
	}
	assertStdoutIs(t, stdout, prev)
	if recs := e.spooled(t); len(recs) != 1 {
		t.Errorf("spool holds %d records, want 1", len(recs))
	}
}

func TestBinaryErrorsAreCNIErrorJSON(t *testing.T) {
	e := newEnv(t)
	sock := deadSocket(t)
	tests := []struct {
		name    string
		command string
		conf    map[string]any
		code    float64
		msgSub  string
	}{
		{"ADD without prevResult", "ADD", netConf("1.1.0", sock, e.spoolDir), 7, "chained after a main plugin"},
		{"STATUS with a bad value", "STATUS", func() map[string]any {
			c := netConf("1.1.0", sock, e.spoolDir)
			c["logLevel"] = "loud"
			return c
		}(), 7, `logLevel "loud"`},
		{"unsupported version", "ADD", netConf("0.3.1", sock, e.spoolDir), 1, "incompatible CNI versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, code := execPlugin(t, tt.command, "/var/run/netns/none", tt.conf, "")
			if code == 0 {
				t.Fatalf("exit code 0, want failure; stdout %s", stdout)
			}
			var cniErr struct {
				Code float64 `json:"code"`
				Msg  string  `json:"msg"`
			}
			if err := json.Unmarshal(stdout, &cniErr); err != nil {
				t.Fatalf("stdout is not a CNI error: %v\n%s", err, stdout)
			}
			if cniErr.Code != tt.code || !strings.Contains(cniErr.Msg, tt.msgSub) {
				t.Errorf("error = %+v, want code %v and a message containing %q", cniErr, tt.code, tt.msgSub)
			}
		})
	}
}

func TestBinaryStatusSucceedsSilentlyWithDaemonDown(t *testing.T) {
	e := newEnv(t)
	stdout, code := execPlugin(t, "STATUS", "", netConf("1.1.0", deadSocket(t), e.spoolDir), "")
	if code != 0 || len(stdout) != 0 {
		t.Errorf("STATUS: exit %d, stdout %q; want 0 and nothing", code, stdout)
	}
}
