package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCommand runs the binary's command against a real kube-apiserver and
// an embedded datastore: with leader election on (the default), a labelled
// namespace becomes its kns. profile, /readyz answers on --listen, and the
// command returns nil when its context ends.
func TestCommand(t *testing.T) {
	s, err := kubetest.Start(kubetest.Require(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	m := datastoretest.New(t)
	ports, err := datastore.FreeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newCommand(slog.New(slog.DiscardHandler))
	cmd.SetArgs([]string{"--kubeconfig", s.Kubeconfig, "--etcd-endpoints", m.Endpoints[0],
		"--listen", listen, "--lease-namespace", "default", "--resync-period", "-1s"})
	cmd.SetOut(io.Discard)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kc-cmd", Labels: map[string]string{"team": "blue"}}}
	if _, err := s.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pk, _ := api.LookupKind("Profile")
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := m.Client.Get(ctx, pk, "", "kns.kc-cmd")
		if err == nil {
			if got := o.(*api.Profile).Spec.LabelsToApply["pcns.team"]; got != "blue" {
				t.Fatalf("profile kns.kc-cmd labelsToApply = %v, want pcns.team=blue", o.(*api.Profile).Spec.LabelsToApply)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("command returned before syncing the namespace: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace kc-cmd not synced to profile kns.kc-cmd within 30s: last error %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("command after its context ended: %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("command did not return within 20s of its context ending")
	}
}
