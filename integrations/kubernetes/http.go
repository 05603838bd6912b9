package kubernetes

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /livez (the process answers), /readyz (a standby
// replica, or the leader once its first full resync is done) and
// /metrics (Prometheus).
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case c.standby.Load():
			_, _ = w.Write([]byte("ok (standby)\n"))
		case c.ready.Load():
			_, _ = w.Write([]byte("ok\n"))
		default:
			http.Error(w, "not ready: caches syncing or first resync running", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.m.reg, promhttp.HandlerOpts{}))
	return mux
}
