package main

import (
	"context"
	"os"

	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubepod"
)

// kubePodInfo returns the CNI service's pod lookup through the Kubernetes
// API, so that a pod's endpoint carries its labels, service account and
// named ports from the first packet; nil when no kubeconfig is given (flag
// --kubeconfig, else env BRINDLE_KUBECONFIG; "in-cluster" uses the pod's
// service account).
func kubePodInfo(kubeconfig string) (func(ctx context.Context, namespace, pod string) (cni.PodInfo, error), error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("BRINDLE_KUBECONFIG")
	}
	if kubeconfig == "" {
		return nil, nil
	}
	cfg, err := kubepod.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubepod.Lookup(cfg)
}
