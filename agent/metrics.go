package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, on a registry of its own
// (no global registration).
type metrics struct {
	reg *prometheus.Registry

	localEndpoints prometheus.Gauge
	activePolicies prometheus.Gauge
	activeProfiles prometheus.Gauge
	ipSets         prometheus.Gauge
	inSync         prometheus.Gauge
	programmed     prometheus.Gauge
	// datastoreNotReady is 1 while ClusterInformation says
	// datastoreReady: false (programming paused).
	datastoreNotReady prometheus.Gauge

	datastoreUpdates   prometheus.Counter
	calcRejected       prometheus.Counter
	calcBatch          prometheus.Histogram
	applyDuration      prometheus.Histogram
	updateToProgrammed prometheus.Histogram
	applies            prometheus.Counter
	applyErrors        *prometheus.CounterVec // by dataplane
	resyncs            *prometheus.CounterVec // by dataplane
	resyncErrors       *prometheus.CounterVec // by dataplane
	genericClasses     prometheus.Gauge
	settles            prometheus.Counter
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		localEndpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_active_local_endpoints",
			Help: "Local workload endpoints in the programmed state."}),
		activePolicies: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_active_local_policies",
			Help: "Policies selecting at least one local endpoint."}),
		activeProfiles: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_active_local_profiles",
			Help: "Profiles named by local endpoints."}),
		ipSets: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_active_ipsets",
			Help: "IP sets (selector, CIDR and named-port sets) the active rules use."}),
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_datastore_in_sync",
			Help: "1 once the datastore snapshot has been received."}),
		programmed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_dataplane_programmed",
			Help: "1 when the last apply succeeded and nothing is waiting to be applied."}),
		datastoreNotReady: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_datastore_not_ready",
			Help: "1 while ClusterInformation default says datastoreReady: false and programming is paused."}),
		datastoreUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_datastore_updates_total",
			Help: "Datastore updates fed to the calculation."}),
		calcRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_calc_rejected_updates_total",
			Help: "Datastore objects the calculation could not use (treated as absent)."}),
		calcBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "brindle_calc_update_time_seconds",
			Help:    "Time to feed one batch of datastore updates to the calculation.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10)}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "brindle_apply_duration_seconds",
			Help:    "Time of one apply: computing the desired state and programming nftables and routes.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 3, 12)}),
		updateToProgrammed: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "brindle_update_to_programmed_seconds",
			Help:    "Time from the agent receiving a datastore change (after the start of day) to the kernel having it programmed, including time queued behind a running apply, retries, and any pause while the datastore is marked not ready.",
			Buckets: prometheus.ExponentialBuckets(5e-4, 2, 14)}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_applies_total",
			Help: "Applies attempted."}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_apply_errors_total",
			Help: "Failed applies, by dataplane (nft, route); each is retried with backoff."}, []string{"dataplane"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_resyncs_total",
			Help: "Periodic read-back-and-repair passes, by dataplane."}, []string{"dataplane"}),
		resyncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "brindle_resync_errors_total",
			Help: "Failed resyncs, by dataplane."}, []string{"dataplane"}),
		genericClasses: prometheus.NewGauge(prometheus.GaugeOpts{Name: "brindle_nft_generic_classes",
			Help: "Endpoint classes programmed through the generic chains, waiting for chains of their own."}),
		settles: prometheus.NewCounter(prometheus.CounterOpts{Name: "brindle_nft_settles_total",
			Help: "Transactions that gave generic classes chains of their own."}),
	}
	reg.MustRegister(m.localEndpoints, m.activePolicies, m.activeProfiles, m.ipSets, m.inSync, m.programmed, m.datastoreNotReady,
		m.datastoreUpdates, m.calcRejected, m.calcBatch, m.applyDuration, m.updateToProgrammed, m.applies, m.applyErrors,
		m.resyncs, m.resyncErrors, m.genericClasses, m.settles,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, dp := range []string{dataplaneNft, dataplaneRoute} {
		m.applyErrors.WithLabelValues(dp)
		m.resyncs.WithLabelValues(dp)
		m.resyncErrors.WithLabelValues(dp)
	}
	return m
}

// Dataplane labels.
const (
	dataplaneNft   = "nft"
	dataplaneRoute = "route"
)
