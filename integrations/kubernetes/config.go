package kubernetes

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/brindle-net/brindle/datastore"
	"k8s.io/client-go/kubernetes"
)

// The controllers Controller can run (Calico's ENABLED_CONTROLLERS names).
const (
	ControllerPolicy           = "policy"
	ControllerNamespace        = "namespace"
	ControllerServiceAccount   = "serviceaccount"
	ControllerWorkloadEndpoint = "workloadendpoint"
	ControllerNode             = "node"
)

// AllControllers is the default set, in the order they are listed.
var AllControllers = []string{ControllerPolicy, ControllerNamespace, ControllerServiceAccount, ControllerWorkloadEndpoint, ControllerNode}

// Defaults.
const (
	DefaultWorkers      = 4
	DefaultResyncPeriod = 5 * time.Minute
	// DefaultGapResyncDelay is how long after a Kubernetes watch error a
	// full resync runs (the informer relists in the meantime).
	DefaultGapResyncDelay = 2 * time.Second
)

// Config configures a Controller.
type Config struct {
	// Kube is the Kubernetes API. Required.
	Kube kubernetes.Interface
	// Datastore is Brindle's datastore. Required.
	Datastore *datastore.Client
	// Controllers to run; default AllControllers.
	Controllers []string
	// Workers reconcile keys in parallel; default DefaultWorkers.
	Workers int
	// ResyncPeriod between full resyncs (every object of both sides
	// compared); default DefaultResyncPeriod; negative disables them
	// (the resync on start and after watch gaps still runs).
	ResyncPeriod time.Duration
	// GapResyncDelay: see DefaultGapResyncDelay.
	GapResyncDelay time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Kube == nil {
		return errors.New("kubernetes: Config.Kube is required")
	}
	if c.Datastore == nil {
		return errors.New("kubernetes: Config.Datastore is required")
	}
	if len(c.Controllers) == 0 {
		c.Controllers = AllControllers
	}
	for i, n := range c.Controllers {
		if !slices.Contains(AllControllers, n) {
			return fmt.Errorf("kubernetes: Config.Controllers[%d]: unknown controller %q (want one of %v)", i, n, AllControllers)
		}
	}
	if c.Workers < 0 {
		return fmt.Errorf("kubernetes: Config.Workers %d: must not be negative", c.Workers)
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.ResyncPeriod == 0 {
		c.ResyncPeriod = DefaultResyncPeriod
	}
	if c.GapResyncDelay <= 0 {
		c.GapResyncDelay = DefaultGapResyncDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) enabled(name string) bool { return slices.Contains(c.Controllers, name) }
