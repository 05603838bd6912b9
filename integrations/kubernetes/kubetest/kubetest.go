// Package kubetest runs a real kube-apiserver, with an etcd of its own, on
// loopback for tests (no kubelet, no controller-manager: see
// docs/kubernetes.md for what that means for pods and namespaces).
//
// The binaries come from hack/kube/build.sh (kube-apiserver v1.37.2 and
// etcd v3.7.0 built from the hack/kube wrapper module). BinDir finds them:
// BRINDLE_KUBE_BIN, else <BRINDLE_KUBE_CACHE>/v1.37.2, else
// /var/cache/brindle/kube/v1.37.2, else
// ${XDG_CACHE_HOME:-~/.cache}/brindle/kube/v1.37.2. Require fails a test
// when they are missing, naming the script to run, unless BRINDLE_SKIP_KUBE=1
// says to skip such tests: they are never skipped silently.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/datastore"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version hack/kube/build.sh builds.
const Version = "v1.37.2"

// Token is the bearer token of the test's admin user (system:masters).
const Token = "brindle-test-token"

// SkipEnv names the variable that, set to 1, skips tests needing the API
// server instead of failing them.
const SkipEnv = "BRINDLE_SKIP_KUBE"

// BinDir returns the folder holding kube-apiserver and etcd.
func BinDir() (string, error) {
	var cands []string
	if d := os.Getenv("BRINDLE_KUBE_BIN"); d != "" {
		cands = append(cands, d)
	} else {
		if c := os.Getenv("BRINDLE_KUBE_CACHE"); c != "" {
			cands = append(cands, filepath.Join(c, Version))
		}
		cands = append(cands, filepath.Join("/var/cache/brindle/kube", Version))
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			if h, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(h, ".cache")
			}
		}
		if cache != "" {
			cands = append(cands, filepath.Join(cache, "brindle/kube", Version))
		}
	}
	for _, d := range cands {
		if isExec(filepath.Join(d, "kube-apiserver")) && isExec(filepath.Join(d, "etcd")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("kube-apiserver and etcd %s not found in %v: run hack/kube/build.sh (about 10 minutes the first time; `make test` runs it through hack/setup.sh) or set BRINDLE_KUBE_BIN to their folder; set %s=1 to skip these tests", Version, cands, SkipEnv)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Require returns BinDir, or skips the test when BRINDLE_SKIP_KUBE=1, or
// fails it.
func Require(t testing.TB) string {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs a real kube-apiserver", SkipEnv)
	}
	d, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Server is a running kube-apiserver and its etcd.
type Server struct {
	// Config reaches the API server as an admin.
	Config *rest.Config
	// Client is a clientset on Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// URL is the API server's https URL.
	URL string

	dir       string
	etcd, api *exec.Cmd
	apiBin    string
	apiArgs   []string
	apiWait   chan error
	waits     []chan error
}

// Start runs etcd and kube-apiserver from binDir, on free loopback ports,
// and waits until the API server is ready (about 3 s).
func Start(binDir string) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "brindle-kube")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(Token + ",admin,admin-uid,system:masters\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return nil, err
		}
	}
	ports, err := datastore.FreeLoopbackPorts(3)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.etcd, err = s.start(filepath.Join(binDir, "etcd"), "etcd.log",
		"--data-dir="+filepath.Join(dir, "etcd"), "--name=default",
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer, "--log-level=error", "--quota-backend-bytes=4294967296",
	)
	if err != nil {
		return nil, err
	}
	if err := s.waitHTTP(client+"/health", nil, 20*time.Second, "etcd.log"); err != nil {
		return nil, err
	}
	s.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	s.apiBin = filepath.Join(binDir, "kube-apiserver")
	s.apiArgs = []string{
		"--etcd-servers=" + client, "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[2]),
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=AlwaysAllow", "--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.96.0.0/16", "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
	}
	if err := s.startAPI(); err != nil {
		return nil, err
	}
	s.Config = &rest.Config{Host: s.URL, BearerToken: Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 1000, Burst: 2000}
	if s.Client, err = kubernetes.NewForConfig(s.Config); err != nil {
		return nil, err
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, s.URL, Token)
	if err := os.WriteFile(s.Kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(bin, logName string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(s.dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the test binary, whatever happens to it. The parent-death
	// signal follows the thread that forked, so the child is started and
	// waited for on a locked thread that lives exactly as long as it does
	// (privileged tests end threads that entered network namespaces).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
		log.Close()
	}()
	if err := <-started; err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s.waits = append(s.waits, done)
	return cmd, nil
}

// waitHTTP polls url until it answers 200 "ok"-ish, the process dies or the
// time is up; errors carry the end of the log.
func (s *Server) waitHTTP(url string, hdr map[string]string, limit time.Duration, logName string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	deadline := time.Now().Add(limit)
	done := s.waits[len(s.waits)-1]
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("%s exited (%v) before it was ready:\n%s", logName, err, s.tail(logName))
		default:
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s:\n%s", url, limit, s.tail(logName))
}

func (s *Server) tail(logName string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, logName))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

func (s *Server) startAPI() error {
	var err error
	if s.api, err = s.start(s.apiBin, "kube-apiserver.log", s.apiArgs...); err != nil {
		return err
	}
	s.apiWait = s.waits[len(s.waits)-1]
	return s.waitHTTP(s.URL+"/readyz", map[string]string{"Authorization": "Bearer " + Token}, 60*time.Second, "kube-apiserver.log")
}

// RestartAPIServer kills kube-apiserver and starts it again on the same
// port and etcd: every client watch breaks (a watch gap), no data is lost.
func (s *Server) RestartAPIServer() error {
	_ = s.api.Process.Kill()
	err := <-s.apiWait
	s.apiWait <- err // Stop waits on it too
	return s.startAPI()
}

// Stop kills both processes, waits for them and removes their files.
func (s *Server) Stop() {
	for _, c := range []*exec.Cmd{s.api, s.etcd} {
		if c != nil && c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	for _, w := range s.waits {
		select {
		case <-w:
		case <-time.After(10 * time.Second):
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
