package kubernetes

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the controller's Prometheus metrics, on a registry of its
// own (no global registration).
type metrics struct {
	reg *prometheus.Registry

	reconciles    *prometheus.CounterVec // by kind, result
	writes        *prometheus.CounterVec // by kind, op
	resyncs       *prometheus.CounterVec // by reason
	resyncSeconds prometheus.Gauge
	watchErrors   prometheus.Counter
	invalid       prometheus.Counter
	nodeCleanups  prometheus.Counter
	leader        prometheus.Gauge
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_kube_reconciles_total",
			Help: "Keys reconciled, by Kubernetes kind and result (ok, error)."}, []string{"kind", "result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_kube_datastore_writes_total",
			Help: "Datastore writes, by kind and operation."}, []string{"kind", "op"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_kube_resyncs_total",
			Help: "Full resyncs, by reason (start, periodic, watch gap)."}, []string{"reason"}),
		resyncSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_kube_start_resync_seconds",
			Help: "Duration of the full resync on start."}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_kube_watch_errors_total",
			Help: "Kubernetes watches that ended with an error (each is followed by a relist and a resync)."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_kube_untranslatable_policies_total",
			Help: "Kubernetes NetworkPolicies that could not be translated (not enforced)."}),
		nodeCleanups: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_kube_node_cleanups_total",
			Help: "Deleted Kubernetes nodes whose Brindle node, endpoints, affinities and addresses were released."}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_kube_is_leader",
			Help: "1 while this replica holds the leader lease."}),
	}
	reg.MustRegister(m.reconciles, m.writes, m.resyncs, m.resyncSeconds, m.watchErrors, m.invalid, m.nodeCleanups, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
