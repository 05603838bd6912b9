package kubernetes_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPrivilegedPolicyEnforcement: the time from a NetworkPolicy
// create in the API server (the Create call's start) until a client pod's
// new TCP connections to a server pod stop getting through, on the real
// path: API server → informer → controller → datastore → agent →
// nftables. A prober in the client opens a connection every few
// milliseconds with a 20 ms timeout; the first one that fails marks
// enforcement (so the figure includes up to 20 ms of probe timeout).
// The policy is then deleted and the next op starts once traffic flows
// again. Reported: p50-ms, p99-ms, max-ms.
func BenchmarkPrivilegedPolicyEnforcement(b *testing.B) {
	c := newCluster(b, "10.89.0.0/16")
	ns := c.name("bench-enf")
	c.createNS(ns, nil)
	server := c.addPod(podObject(ns, "server", "", "", map[string]string{"app": "server"}), "")
	client := c.addPod(podObject(ns, "client", "", "", map[string]string{"role": "client"}), "")
	c.serve(server, 80, "TCP")
	c.settle()
	c.await(2*time.Second, check{client, server, 80, "TCP", true})
	addr := net.JoinHostPort(server.ip.String(), strconv.Itoa(80))
	// connects reports whether one connection from the client gets an echo.
	connects := func() bool {
		ok := false
		_ = client.ns.Do(func() error {
			conn, err := net.DialTimeout("tcp", addr, 20*time.Millisecond)
			if err != nil {
				return nil
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := conn.Write([]byte{1}); err != nil {
				return nil
			}
			buf := []byte{0}
			_, err = conn.Read(buf)
			ok = err == nil
			return nil
		})
		return ok
	}
	ctx := context.Background()
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.kube.NetworkingV1().NetworkPolicies(ns).Create(ctx, deny.DeepCopy(), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for connects() {
			if time.Since(t0) > 10*time.Second {
				b.Fatal("policy not enforced after 10 s")
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if err := c.kube.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "deny", metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !connects() {
			if time.Now().After(deadline) {
				b.Fatal(errors.New("traffic did not resume 10 s after the policy was deleted"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
