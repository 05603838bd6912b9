package kubernetes

import (
	"context"
	"fmt"
	"time"

	"github.com/brindle-net/brindle/cni"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PodInfoTimeout bounds one pod lookup of a CNI ADD.
const PodInfoTimeout = 10 * time.Second

// PodInfoLookup is the CNI service's pod lookup (cni.ServiceConfig.PodInfo)
// through the Kubernetes API: the pod's labels, service account and named
// ports, so its endpoint is complete from the first packet. The ports are
// computed by PodPorts, as the controller does, so the controller has
// nothing to change after ADD.
func PodInfoLookup(cs kubernetes.Interface) func(ctx context.Context, namespace, pod string) (cni.PodInfo, error) {
	return func(ctx context.Context, namespace, pod string) (cni.PodInfo, error) {
		ctx, cancel := context.WithTimeout(ctx, PodInfoTimeout)
		defer cancel()
		p, err := cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return cni.PodInfo{}, fmt.Errorf("kubernetes: get pod %s/%s: %w", namespace, pod, err)
		}
		return cni.PodInfo{Labels: p.Labels, ServiceAccount: p.Spec.ServiceAccountName, Ports: PodPorts(p)}, nil
	}
}
