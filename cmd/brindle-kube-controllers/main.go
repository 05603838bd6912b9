// Command brindle-kube-controllers keeps Brindle's datastore in step with a
// Kubernetes API server (Calico's kube-controllers in etcd mode). It is a
// binary of its own, as Calico's is, because the typed Kubernetes clients
// and informers it needs would otherwise make every host's agent larger
// (see integrations/kubernetes/kubepod).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/brindle-net/brindle/datastore"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubepod"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

// kubeControllersFlags are the flags of brindle-kube-controllers.
type kubeControllersFlags struct {
	kubeconfig    string
	endpoints     string
	caFile        string
	certFile      string
	keyFile       string
	controllers   string
	workers       int
	resync        time.Duration
	listen        string
	leaderElect   bool
	leaseNS       string
	leaseName     string
	identity      string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := newCommand(logger).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// newCommand is brindle-kube-controllers' only command.
func newCommand(logger *slog.Logger) *cobra.Command {
	var fl kubeControllersFlags
	cmd := &cobra.Command{
		Use:   "brindle-kube-controllers",
		Short: "Sync Kubernetes NetworkPolicies, namespaces, service accounts, pods and nodes into the datastore",
		Long: `Watch the Kubernetes API and keep Brindle's datastore in step (etcd mode):
NetworkPolicy → knp.default.<name>, Namespace → profile kns.<ns>,
ServiceAccount → profile ksa.<ns>.<sa>, Pod labels and service account → its
WorkloadEndpoint, deleted Node → its Brindle node, endpoints, block
affinities and addresses released. A full resync runs on start, after a
watch gap and periodically. Several replicas may run: one leads through a
Lease. /livez, /readyz and /metrics are served on --listen.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runKubeControllers(ctx, fl, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", `kubeconfig file, or "in-cluster" (env BRINDLE_KUBECONFIG, then KUBECONFIG; default in-cluster)`)
	f.StringVar(&fl.endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs (env BRINDLE_ETCD_ENDPOINTS; default "+datastore.DefaultEndpoint+")")
	f.StringVar(&fl.caFile, "etcd-ca", "", "CA certificate for etcd TLS (env BRINDLE_ETCD_CA_FILE)")
	f.StringVar(&fl.certFile, "etcd-cert", "", "client certificate for etcd TLS (env BRINDLE_ETCD_CERT_FILE)")
	f.StringVar(&fl.keyFile, "etcd-key", "", "client key for etcd TLS (env BRINDLE_ETCD_KEY_FILE)")
	f.StringVar(&fl.controllers, "controllers", "", "comma-separated controllers (env ENABLED_CONTROLLERS; default "+strings.Join(k8sint.AllControllers, ",")+")")
	f.IntVar(&fl.workers, "workers", k8sint.DefaultWorkers, "keys reconciled in parallel")
	f.DurationVar(&fl.resync, "resync-period", k8sint.DefaultResyncPeriod, "time between full resyncs (negative: none besides start and watch gaps)")
	f.StringVar(&fl.listen, "listen", ":9094", "address of /livez, /readyz and /metrics (empty: none)")
	f.BoolVar(&fl.leaderElect, "leader-elect", true, "take a Lease so that only one replica reconciles")
	f.StringVar(&fl.leaseNS, "lease-namespace", "kube-system", "namespace of the leader Lease")
	f.StringVar(&fl.leaseName, "lease-name", "brindle-kube-controllers", "name of the leader Lease")
	f.StringVar(&fl.identity, "identity", "", "this replica's identity in the Lease (default: hostname_pid)")
	f.DurationVar(&fl.leaseDuration, "lease-duration", 15*time.Second, "leader lease duration")
	f.DurationVar(&fl.renewDeadline, "renew-deadline", 10*time.Second, "leader renew deadline")
	f.DurationVar(&fl.retryPeriod, "retry-period", 2*time.Second, "leader election retry period")
	return cmd
}

// runKubeControllers wires the controller: clients, controller, health
// listener, then leader election (or a plain run).
func runKubeControllers(ctx context.Context, fl kubeControllersFlags, logger *slog.Logger) error {
	// Step 1: the Kubernetes client.
	kc := cmp.Or(fl.kubeconfig, os.Getenv("BRINDLE_KUBECONFIG"), os.Getenv("KUBECONFIG"), kubepod.InCluster)
	rc, err := kubepod.RESTConfig(kc)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", kc, err)
	}

	// Step 2: the datastore client.
	dsCfg := datastore.Config{
		CAFile:   cmp.Or(fl.caFile, os.Getenv("BRINDLE_ETCD_CA_FILE")),
		CertFile: cmp.Or(fl.certFile, os.Getenv("BRINDLE_ETCD_CERT_FILE")),
		KeyFile:  cmp.Or(fl.keyFile, os.Getenv("BRINDLE_ETCD_KEY_FILE")),
		Logger:   logger,
	}
	for _, e := range strings.Split(cmp.Or(fl.endpoints, os.Getenv("BRINDLE_ETCD_ENDPOINTS")), ",") {
		if e = strings.TrimSpace(e); e != "" {
			dsCfg.Endpoints = append(dsCfg.Endpoints, e)
		}
	}
	client, err := datastore.New(ctx, dsCfg)
	if err != nil {
		return err
	}
	defer client.Close()

	// Step 3: the controller.
	var names []string
	for _, n := range strings.Split(cmp.Or(fl.controllers, os.Getenv("ENABLED_CONTROLLERS")), ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	ctrl, err := k8sint.New(k8sint.Config{
		Kube: kube, Datastore: client, Controllers: names, Workers: fl.workers,
		ResyncPeriod: fl.resync, Logger: logger,
	})
	if err != nil {
		return err
	}

	// Step 4: health and metrics.
	if fl.listen != "" {
		ln, err := net.Listen("tcp", fl.listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		srv := &http.Server{Handler: ctrl.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("serving health and metrics", "address", ln.Addr().String())
	}

	// Step 5: run, as the leader or alone.
	if !fl.leaderElect {
		return ctrl.Run(ctx)
	}
	id := fl.identity
	if id == "" {
		h, _ := os.Hostname()
		id = fmt.Sprintf("%s_%d", h, os.Getpid())
	}
	err = ctrl.RunElected(ctx, k8sint.ElectionConfig{
		Namespace: fl.leaseNS, Name: fl.leaseName, Identity: id,
		LeaseDuration: fl.leaseDuration, RenewDeadline: fl.renewDeadline, RetryPeriod: fl.retryPeriod,
	})
	if errors.Is(err, k8sint.ErrLostLease) {
		logger.Warn("lost the leader lease; exiting for a restart as a standby")
	}
	return err
}
