package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ElectionConfig configures leader election through a coordination.k8s.io
// Lease, so that several replicas can run and exactly one reconciles.
type ElectionConfig struct {
	// Namespace and Name of the Lease; defaults "kube-system" and
	// "brindle-kube-controllers".
	Namespace, Name string
	// Identity of this replica (e.g. the pod name). Required.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod as in client-go;
	// defaults 15 s, 10 s, 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// ErrLostLease is returned by RunElected when this replica stopped being
// the leader: it exits so that its supervisor restarts it as a standby.
var ErrLostLease = errors.New("kubernetes: lost the leader lease")

// RunElected waits to become the leader, then runs the controller until
// ctx ends (nil) or the lease is lost (ErrLostLease). While waiting the
// controller reports itself ready as a standby.
func (c *Controller) RunElected(ctx context.Context, ec ElectionConfig) error {
	if ec.Identity == "" {
		return errors.New("kubernetes: ElectionConfig.Identity is required")
	}
	if ec.Namespace == "" {
		ec.Namespace = "kube-system"
	}
	if ec.Name == "" {
		ec.Name = "brindle-kube-controllers"
	}
	if ec.LeaseDuration == 0 {
		ec.LeaseDuration = 15 * time.Second
	}
	if ec.RenewDeadline == 0 {
		ec.RenewDeadline = 10 * time.Second
	}
	if ec.RetryPeriod == 0 {
		ec.RetryPeriod = 2 * time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ec.Namespace, Name: ec.Name},
		Client:     c.cfg.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: ec.Identity},
	}
	var runErr error
	var led atomic.Bool
	// le.Run returns without waiting for OnStartedLeading; runDone says
	// when the controller has stopped.
	runDone := make(chan struct{})
	c.standby.Store(true)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   ec.LeaseDuration,
		RenewDeadline:   ec.RenewDeadline,
		RetryPeriod:     ec.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            ec.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				defer close(runDone)
				led.Store(true)
				c.standby.Store(false)
				c.m.leader.Set(1)
				c.log.Info("became the leader", "identity", ec.Identity)
				runErr = c.Run(lctx)
			},
			OnStoppedLeading: func() {
				c.m.leader.Set(0)
				c.log.Info("stopped leading", "identity", ec.Identity)
			},
			OnNewLeader: func(id string) {
				if id != ec.Identity {
					c.log.Info("leader", "identity", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("kubernetes: leader election: %w", err)
	}
	le.Run(ctx)
	if led.Load() {
		<-runDone
	}
	switch {
	case runErr != nil && ctx.Err() == nil:
		return runErr
	case ctx.Err() != nil:
		return nil
	case led.Load():
		return ErrLostLease
	}
	return nil
}
