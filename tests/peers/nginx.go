package peers

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
)

// NginxOptions shapes an nginx instance run inside a pod.
type NginxOptions struct {
	Listen    string // host:port of the HTTP/1.1 server
	ListenH2C string // host:port of the cleartext HTTP/2 server; "" for none
	// ListenTLS is host:port of an HTTPS server (HTTP/1.1, and HTTP/2
	// by ALPN) with a self-signed certificate (SelfSignedCert); "" for
	// none.
	ListenTLS string
	// Files maps names under /files/ to their sizes; each is filled with
	// Pattern(size) and served with sendfile.
	Files map[string]int
}

// Nginx is Debian's nginx running in the foreground inside a pod, with its
// config, logs, pid and temp files in a private directory.
type Nginx struct {
	Dir       string
	AccessLog string
	ErrorLog  string
	Proc      *harness.Process
}

// NginxLogEntry is one line of the access log, in the "weir" format the
// config defines: nginx's own account of each request.
type NginxLogEntry struct {
	Method        string
	URI           string
	Status        int
	BodyBytesSent int64
	BytesSent     int64
	RequestLength int64
	Protocol      string
}

const nginxLogFormat = `'$request_method $request_uri $status $body_bytes_sent $bytes_sent $request_length $server_protocol'`

// StartNginx writes a minimal config and runs nginx inside where, waiting
// until it accepts connections on opts.Listen. Locations: /files/NAME serves
// opts.Files; every other path answers 200 "hello from nginx\n".
func StartNginx(t testing.TB, where Runner, opts NginxOptions) *Nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx not installed (Debian package nginx-light): %v", err)
	}
	dir := t.TempDir()
	n := &Nginx{Dir: dir, AccessLog: filepath.Join(dir, "access.log"), ErrorLog: filepath.Join(dir, "error.log")}
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range opts.Files {
		if err := os.WriteFile(filepath.Join(www, name), Pattern(size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	server := func(listen, extra string) string {
		return fmt.Sprintf(`
	server {
		listen %s%s;
		location /files/ { alias %s/; }
		location / { return 200 "hello from nginx\n"; }
	}`, listen, extra, www)
	}
	servers := server(opts.Listen, "")
	if opts.ListenH2C != "" {
		servers += server(opts.ListenH2C, " http2")
	}
	if opts.ListenTLS != "" {
		cert, key := SelfSignedCert(t, dir)
		servers += server(opts.ListenTLS, fmt.Sprintf(" ssl http2;\n\t\tssl_certificate %s;\n\t\tssl_certificate_key %s", cert, key))
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 512; }
http {
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 100000;
	log_format weir %[2]s;
	access_log %[1]s/access.log weir;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
%[3]s
}
`, dir, nginxLogFormat, servers)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := where.Command(context.Background(), bin, "-p", dir, "-c", confPath, "-e", n.ErrorLog)
	n.Proc = harness.StartProcess(t, "nginx", cmd)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(n.ErrorLog); err == nil {
				t.Logf("nginx error log:\n%s", b)
			}
		}
	})
	// nginx prints nothing when ready; wait for its listening socket.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "nginx.pid")); err == nil {
			break
		}
		if exited, werr := n.Proc.Exited(); exited {
			t.Fatalf("nginx exited: %v\n%s", werr, n.Proc.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not start within 10s:\n%s", n.Proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// Log reads the access log.
func (n *Nginx) Log() ([]NginxLogEntry, error) {
	f, err := os.Open(n.AccessLog)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open nginx access log: %w", err)
	}
	defer f.Close()
	var out []NginxLogEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 7 {
			return nil, fmt.Errorf("nginx access log line %q: want 7 fields", sc.Text())
		}
		e := NginxLogEntry{Method: fields[0], URI: fields[1], Protocol: fields[6]}
		var errs [4]error
		e.Status, errs[0] = strconv.Atoi(fields[2])
		e.BodyBytesSent, errs[1] = strconv.ParseInt(fields[3], 10, 64)
		e.BytesSent, errs[2] = strconv.ParseInt(fields[4], 10, 64)
		e.RequestLength, errs[3] = strconv.ParseInt(fields[5], 10, 64)
		for _, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("nginx access log line %q: %w", sc.Text(), err)
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// WaitLog polls the access log until it has at least n entries or ctx ends.
// nginx writes the line when a request finishes, which can trail the
// client's view of the response by a moment.
func (n *Nginx) WaitLog(ctx context.Context, want int) ([]NginxLogEntry, error) {
	for {
		got, err := n.Log()
		if err != nil {
			return nil, err
		}
		if len(got) >= want {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("nginx access log has %d entries, want %d: %w", len(got), want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SelfSignedCert writes a self-signed ECDSA certificate and its key (PEM)
// into dir, for TLS servers that clients reach with verification off.
func SelfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "weir-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"weir-test"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
