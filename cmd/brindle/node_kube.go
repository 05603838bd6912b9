package main

import (
	"context"
	"fmt"
	"os"

	"github.com/brindle-net/brindle/cni"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
	cs, err := kubeClient(kubeconfig)
	if err != nil {
		return nil, err
	}
	return k8sint.PodInfoLookup(cs), nil
}

// kubeClient builds a clientset from a kubeconfig path, or from the pod's
// service account for "in-cluster".
func kubeClient(kubeconfig string) (*kubernetes.Clientset, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "in-cluster" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "brindle"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cs, nil
}
