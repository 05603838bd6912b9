package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bounds of ?timeout= on the endpoint readiness wait.
const (
	DefaultReadyTimeout = 10 * time.Second
	MaxReadyTimeout     = 5 * time.Minute
)

// mux builds the handlers; the local API has all of them, the health and
// metrics listeners their own subsets.
func (a *Agent) mux(api, metrics bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", a.handleLive)
	mux.HandleFunc("GET /readyz", a.handleReady)
	// Felix's names, for probes written for it.
	mux.HandleFunc("GET /liveness", a.handleLive)
	mux.HandleFunc("GET /readiness", a.handleReady)
	if api {
		mux.HandleFunc("GET /v1/status", a.handleStatus)
		mux.HandleFunc("GET /v1/endpoints/{namespace}/{name}/ready", a.handleEndpointReady)
		for pattern, h := range a.cfg.LocalHandlers {
			mux.Handle(pattern, h)
		}
	}
	if metrics {
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Agent) handleLive(w http.ResponseWriter, _ *http.Request) {
	if a.board.live(time.Now(), a.cfg.LivenessTimeout) {
		fmt.Fprintln(w, "ok")
		return
	}
	http.Error(w, "the agent loop is not running", http.StatusServiceUnavailable)
}

func (a *Agent) handleReady(w http.ResponseWriter, _ *http.Request) {
	st := a.board.status()
	switch {
	case !st.InSync:
		http.Error(w, "not in sync with the datastore", http.StatusServiceUnavailable)
	case st.DatastoreNotReady:
		http.Error(w, "datastore not ready (ClusterInformation datastoreReady: false); programming paused", http.StatusServiceUnavailable)
	case !st.Programmed:
		msg := "dataplane not programmed yet"
		if st.LastApplyError != "" {
			msg = "dataplane apply failing: " + st.LastApplyError
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.board.status())
}

// handleEndpointReady answers once the endpoint's policy is in the kernel:
// 200 with {"ready":true,...}; after ?timeout= (default 10s) 504 with
// {"ready":false,"reason":...}. ?revision=N (the revision the caller's
// WorkloadEndpoint write returned) makes it wait for a programmed state
// that includes that write.
func (a *Agent) handleEndpointReady(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	timeout := DefaultReadyTimeout
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxReadyTimeout {
			writeJSON(w, http.StatusBadRequest, EndpointReady{Reason: fmt.Sprintf("timeout %q: want a duration from 0s to %s", s, MaxReadyTimeout)})
			return
		}
		timeout = d
	}
	var rev int64
	if s := q.Get("revision"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, EndpointReady{Reason: fmt.Sprintf("revision %q: want a non-negative integer", s)})
			return
		}
		rev = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res := a.WaitEndpoint(ctx, r.PathValue("namespace"), r.PathValue("name"), rev)
	if res.Ready {
		writeJSON(w, http.StatusOK, res)
		return
	}
	writeJSON(w, http.StatusGatewayTimeout, res)
}

// startServers opens the listeners the parameters ask for. Serve errors
// go to errc.
func (a *Agent) startServers(p Params, errc chan<- error, wg *sync.WaitGroup) ([]*http.Server, error) {
	var servers []*http.Server
	serve := func(ln net.Listener, h http.Handler, what string) {
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("agent: %s server: %w", what, err)
			}
		}()
		a.log.Info("listening", "what", what, "addr", ln.Addr().String())
	}
	if path := a.cfg.SocketPath; path != "" {
		ln, err := listenUnix(path)
		if err != nil {
			return servers, err
		}
		serve(ln, a.mux(true, true), "local API")
	}
	if p.HealthEnabled {
		ln, err := net.Listen("tcp", net.JoinHostPort(p.HealthHost, strconv.Itoa(p.HealthPort)))
		if err != nil {
			return servers, fmt.Errorf("agent: health listener: %w", err)
		}
		serve(ln, a.mux(false, false), "health")
	}
	if p.PrometheusMetricsEnabled {
		ln, err := net.Listen("tcp", net.JoinHostPort(p.PrometheusMetricsHost, strconv.Itoa(p.PrometheusMetricsPort)))
		if err != nil {
			return servers, fmt.Errorf("agent: metrics listener: %w", err)
		}
		serve(ln, a.mux(false, true), "metrics")
	}
	return servers, nil
}

// listenUnix listens on a unix socket, replacing a stale socket file left
// by an earlier run (but nothing else).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("agent: local API socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("agent: local API socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("agent: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: local API socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: local API socket: %w", err)
	}
	return ln, nil
}

// Client is a client of the local API over its unix socket (the CNI
// plugin's side).
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr}}
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	_, err := c.get(ctx, "/v1/status", &st)
	return st, err
}

// EndpointReady waits (server side, up to timeout) for the endpoint's
// policy to be programmed. It returns the answer; err is for transport
// failures and bad requests only.
func (c *Client) EndpointReady(ctx context.Context, namespace, name string, revision int64, timeout time.Duration) (EndpointReady, error) {
	var r EndpointReady
	path := fmt.Sprintf("/v1/endpoints/%s/%s/ready?timeout=%s&revision=%d", url.PathEscape(namespace), url.PathEscape(name), timeout, revision)
	code, err := c.get(ctx, path, &r)
	if err == nil && code == http.StatusBadRequest {
		err = fmt.Errorf("agent API: bad request: %s", r.Reason)
	}
	return r, err
}

func (c *Client) get(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("agent API: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("agent API: %s: decode %s response: %w", path, resp.Status, err)
	}
	return resp.StatusCode, nil
}
