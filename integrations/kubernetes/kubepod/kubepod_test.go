package kubepod

import (
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestPorts: the conversion the CNI's pod lookup shares with the
// controller keeps named or host-ported container ports, init containers
// first, and drops ports out of range.
func TestPorts(t *testing.T) {
	tcp, udp, sctp := api.ProtocolFromString("TCP"), api.ProtocolFromString("UDP"), api.ProtocolFromString("SCTP")
	tests := []struct {
		name string
		spec corev1.PodSpec
		want []api.WorkloadEndpointPort
	}{{
		name: "no containers: nil",
	}, {
		name: "unnamed ports without host port: nil",
		spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
	}, {
		name: "order, protocols, host IP, ranges",
		spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "boot", ContainerPort: 9000, Protocol: corev1.ProtocolSCTP}}}},
			Containers: []corev1.Container{
				{Ports: []corev1.ContainerPort{
					{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP, HostPort: 53, HostIP: "10.0.0.9"},
					{Name: "zero", ContainerPort: 0},
					{Name: "big", ContainerPort: 70000},
				}},
				{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
			},
		},
		want: []api.WorkloadEndpointPort{
			{Name: "boot", Protocol: sctp, Port: 9000},
			{Name: "dns", Protocol: udp, Port: 53, HostPort: 53, HostIP: "10.0.0.9"},
			{Name: "http", Protocol: tcp, Port: 8080},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Ports(&corev1.Pod{Spec: tt.spec})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
		})
	}
}
