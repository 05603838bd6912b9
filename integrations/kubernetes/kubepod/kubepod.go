// Package kubepod is what a host agent needs from Kubernetes: a pod's
// labels, service account and named ports at CNI ADD, read through a
// REST client that knows only core/v1.
//
// It is kept apart from integrations/kubernetes (the controller) on
// purpose: the typed clientset and informers register every API group of
// Kubernetes at start-up, and linking them into `brindle node` cost ~30 MB
// of resident memory on an idle host (docs/benchmarks-agent.md, "Idle
// RSS"). cmd/brindle's TestNodeStaysLean keeps them out.
package kubepod

import (
	"context"
	"fmt"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Timeout bounds one pod lookup of a CNI ADD.
const Timeout = 10 * time.Second

// InCluster is the kubeconfig value that means the pod's service account.
const InCluster = "in-cluster"

// RESTConfig loads a kubeconfig file, or the pod's service account for
// InCluster. The user agent is "brindle".
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == InCluster {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "brindle"
	return cfg, nil
}

// Lookup is the CNI service's pod lookup (cni.ServiceConfig.PodInfo): the
// pod's labels, service account and named ports (Ports, as the controller
// computes them, so the controller has nothing to change after ADD).
func Lookup(cfg *rest.Config) (func(ctx context.Context, namespace, pod string) (cni.PodInfo, error), error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubernetes: core/v1 scheme: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	// Protobuf, as client-go's typed clients ask for: cheaper to decode
	// than JSON (the codec factory has both).
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client for %s: %w", cfg.Host, err)
	}
	return func(ctx context.Context, namespace, pod string) (cni.PodInfo, error) {
		ctx, cancel := context.WithTimeout(ctx, Timeout)
		defer cancel()
		var p corev1.Pod
		if err := rc.Get().Namespace(namespace).Resource("pods").Name(pod).Do(ctx).Into(&p); err != nil {
			return cni.PodInfo{}, fmt.Errorf("kubernetes: get pod %s/%s: %w", namespace, pod, err)
		}
		return cni.PodInfo{Labels: p.Labels, ServiceAccount: p.Spec.ServiceAccountName, Ports: Ports(&p)}, nil
	}, nil
}

// Ports are a pod's named ports as Calico derives them (compat §3.3):
// every container and init-container port that has a name or a host port,
// init containers first; nil when there are none.
func Ports(pod *corev1.Pod) []api.WorkloadEndpointPort {
	var out []api.WorkloadEndpointPort
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.ContainerPort <= 0 || p.ContainerPort > 65535 || (p.Name == "" && p.HostPort == 0) {
					continue
				}
				proto := api.ProtocolFromString(api.ProtocolTCP)
				if p.Protocol != "" {
					proto = api.ProtocolFromString(string(p.Protocol))
				}
				out = append(out, api.WorkloadEndpointPort{
					Name: p.Name, Protocol: proto, Port: uint16(p.ContainerPort),
					HostPort: uint16(max(0, min(p.HostPort, 65535))), HostIP: p.HostIP,
				})
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out
}
