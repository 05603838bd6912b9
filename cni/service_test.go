package cni_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/cni/wire"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceOnly is the CNI service over an embedded etcd, without sockets
// or namespaces (no root needed).
type serviceOnly struct {
	member *datastoretest.Member
	ipam   *ipam.IPAM
	svc    *cni.Service
}

func newServiceOnly(t testing.TB, podInfo func(ctx context.Context, ns, pod string) (cni.PodInfo, error)) *serviceOnly {
	t.Helper()
	s := &serviceOnly{member: datastoretest.New(t)}
	pool := &api.IPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: "pool0"},
		Spec:       api.IPPoolSpec{CIDR: testPool4},
	}
	if _, err := s.member.Client.Create(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	var err error
	s.ipam, err = ipam.New(ipam.NewEtcdStore(s.member.Client), ipam.Config{Node: testNode, Source: cni.NewDatastoreSource(s.member.Client)})
	if err != nil {
		t.Fatal(err)
	}
	s.svc, err = cni.NewService(cni.ServiceConfig{
		Datastore: s.member.Client,
		IPAM:      s.ipam,
		Node:      testNode,
		Ready:     func(context.Context, string, string, int64) error { return nil },
		PodInfo:   podInfo,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *serviceOnly) endpoint(t testing.TB, ns, name string) *api.WorkloadEndpoint {
	t.Helper()
	kind, _ := api.LookupKind("WorkloadEndpoint")
	obj, err := s.member.Client.Get(context.Background(), kind, ns, name)
	if err != nil {
		t.Fatalf("endpoint %s/%s: %v", ns, name, err)
	}
	return obj.(*api.WorkloadEndpoint)
}

// TestPodInfo: with ServiceConfig.PodInfo set, a Kubernetes ADD's endpoint
// carries the pod's labels (ours win on a clash), service account and named
// ports; a lookup error fails the ADD and leaves nothing; plain CNI never
// asks.
func TestPodInfo(t *testing.T) {
	errAPI := errors.New("apiserver: connection refused")
	pods := map[string]cni.PodInfo{
		"team-a/web": {
			Labels: map[string]string{
				"app": "web", "tier": "front",
				"projectcalico.org/namespace":      "spoofed",
				"projectcalico.org/orchestrator":   "spoofed",
				"projectcalico.org/serviceaccount": "spoofed",
			},
			ServiceAccount: "web-sa",
			Ports: []api.WorkloadEndpointPort{
				{Name: "http", Protocol: api.ProtocolFromString("TCP"), Port: 8080},
				{Protocol: api.ProtocolFromString("UDP"), Port: 53, HostPort: 5353, HostIP: "10.0.0.9"},
			},
		},
		"team-a/nosa":   {Labels: map[string]string{"app": "nosa"}},
		"team-a/longsa": {Labels: map[string]string{"projectcalico.org/serviceaccount": "spoofed"}, ServiceAccount: strings.Repeat("s", 63)},
	}
	var mu sync.Mutex
	var asked []string
	s := newServiceOnly(t, func(ctx context.Context, ns, pod string) (cni.PodInfo, error) {
		mu.Lock()
		asked = append(asked, ns+"/"+pod)
		mu.Unlock()
		pi, ok := pods[ns+"/"+pod]
		if !ok {
			return cni.PodInfo{}, fmt.Errorf("pod %s/%s: %w", ns, pod, errAPI)
		}
		return pi, nil
	})
	ctx := context.Background()
	tests := []struct {
		name       string
		att        wire.Attachment
		wantLabels map[string]string
		wantSA     string
		wantPorts  []api.WorkloadEndpointPort
		wantErr    string // substring; "" means success
	}{{
		name: "labels and service account from the pod",
		att:  wire.Attachment{Network: testNetwork, ContainerID: "c-web", IfName: "eth0", K8s: &wire.K8s{Namespace: "team-a", Pod: "web", ServiceAccount: "from-args"}},
		wantLabels: map[string]string{
			"app": "web", "tier": "front",
			"projectcalico.org/namespace": "team-a", "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "web-sa",
		},
		wantSA: "web-sa",
		wantPorts: []api.WorkloadEndpointPort{
			{Name: "http", Protocol: api.ProtocolFromString("TCP"), Port: 8080},
			{Protocol: api.ProtocolFromString("UDP"), Port: 53, HostPort: 5353, HostIP: "10.0.0.9"},
		},
	}, {
		name:       "no service account from the pod: the request's",
		att:        wire.Attachment{Network: testNetwork, ContainerID: "c-nosa", IfName: "eth0", K8s: &wire.K8s{Namespace: "team-a", Pod: "nosa", ServiceAccount: "from-args"}},
		wantLabels: map[string]string{"app": "nosa", "projectcalico.org/namespace": "team-a", "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "from-args"},
		wantSA:     "from-args",
	}, {
		name:       "service account too long for a label: no label, not the pod's",
		att:        wire.Attachment{Network: testNetwork, ContainerID: "c-longsa", IfName: "eth0", K8s: &wire.K8s{Namespace: "team-a", Pod: "longsa"}},
		wantLabels: map[string]string{"projectcalico.org/namespace": "team-a", "projectcalico.org/orchestrator": "k8s"},
		wantSA:     strings.Repeat("s", 63),
	}, {
		name:    "lookup error fails the ADD",
		att:     wire.Attachment{Network: testNetwork, ContainerID: "c-gone", IfName: "eth0", K8s: &wire.K8s{Namespace: "team-a", Pod: "gone"}},
		wantErr: "add: look up pod team-a/gone for its labels and service account: pod team-a/gone: apiserver: connection refused",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.svc.Add(ctx, &wire.AddRequest{Attachment: tc.att, AssignIPv4: true})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ADD error %v, want it to contain %q", err, tc.wantErr)
				}
				var we *wire.Error
				if !errors.As(err, &we) || we.Code != wire.CodeInternal {
					t.Errorf("ADD error %#v, want a wire.Error with code %d", err, wire.CodeInternal)
				}
				if _, err := s.ipam.ReleaseByHandle(ctx, tc.att.Network+"."+tc.att.ContainerID); !errors.Is(err, ipam.ErrHandleNotFound) {
					t.Errorf("handle after a failed ADD: %v, want ErrHandleNotFound (released)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			wep := s.endpoint(t, resp.Namespace, resp.Name)
			if diff := cmp.Diff(tc.wantLabels, wep.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			wantProfiles := []string{"kns.team-a", "ksa.team-a." + tc.wantSA}
			if wep.Spec.ServiceAccountName != tc.wantSA || !cmp.Equal(wep.Spec.Profiles, wantProfiles) {
				t.Errorf("service account %q profiles %v, want %q %v", wep.Spec.ServiceAccountName, wep.Spec.Profiles, tc.wantSA, wantProfiles)
			}
			if diff := cmp.Diff(tc.wantPorts, wep.Spec.Ports); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if _, err := s.svc.Del(ctx, &wire.DelRequest{Attachment: tc.att}); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Plain CNI: PodInfo is not asked.
	mu.Lock()
	before := len(asked)
	mu.Unlock()
	plain := wire.Attachment{Network: testNetwork, ContainerID: "c-plain", IfName: "eth0"}
	resp, err := s.svc.Add(ctx, &wire.AddRequest{Attachment: plain, AssignIPv4: true})
	if err != nil {
		t.Fatal(err)
	}
	if wep := s.endpoint(t, resp.Namespace, resp.Name); wep.Labels["app"] != "" {
		t.Errorf("plain CNI endpoint labels %v", wep.Labels)
	}
	if _, err := s.svc.Del(ctx, &wire.DelRequest{Attachment: plain}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(asked) != before {
		t.Errorf("PodInfo asked %v for a plain CNI ADD", asked[before:])
	}
	mu.Unlock()

	// Nothing left: no endpoint, handle or allocation.
	kind, _ := api.LookupKind("WorkloadEndpoint")
	objs, _, err := s.member.Client.List(ctx, kind, datastore.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("%d endpoints left", len(objs))
	}
	rep, err := s.ipam.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("ipam check problems: %+v", rep.Problems)
	}
	show, err := s.ipam.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range show.Pools {
		if p.InUse != 0 {
			t.Errorf("pool %s: %d addresses in use", p.Name, p.InUse)
		}
	}
}

// TestServiceConcurrentAdds: many ADDs at once, some given up by their
// callers at random moments (queued, mid-batch, after), share this host's
// group-committed assignments: each success holds exactly its address,
// every failure holds nothing, no address is handed out twice, and DEL of
// all of them leaves IPAM clean.
func TestServiceConcurrentAdds(t *testing.T) {
	s := newServiceOnly(t, nil)
	const n = 60
	type outcome struct {
		att  wire.Attachment
		resp *wire.AddResponse
		err  error
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		outs[i].att = wire.Attachment{Network: testNetwork, ContainerID: fmt.Sprintf("c%03d", i), IfName: "eth0",
			K8s: &wire.K8s{Namespace: "team-a", Pod: fmt.Sprintf("p%03d", i)}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if i%3 == 0 { // a third give up after 0 to 9 ms
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i%10)*time.Millisecond)
				defer cancel()
			}
			outs[i].resp, outs[i].err = s.svc.Add(ctx, &wire.AddRequest{Attachment: outs[i].att, AssignIPv4: true})
		}()
	}
	wg.Wait()
	ctx := context.Background()
	seen := map[string]string{}
	succeeded := 0
	for i, o := range outs {
		handle := o.att.Network + "." + o.att.ContainerID
		if o.err != nil {
			if i%3 != 0 {
				t.Errorf("ADD %d failed without being cancelled: %v", i, o.err)
			}
			if _, err := s.ipam.ReleaseByHandle(ctx, handle); !errors.Is(err, ipam.ErrHandleNotFound) {
				t.Errorf("ADD %d failed (%v) but its handle holds addresses (release: %v)", i, o.err, err)
			}
			continue
		}
		succeeded++
		if len(o.resp.IPs) != 1 {
			t.Fatalf("ADD %d: IPs %v", i, o.resp.IPs)
		}
		if prev, dup := seen[o.resp.IPs[0]]; dup {
			t.Errorf("%s handed to %s and %s", o.resp.IPs[0], prev, handle)
		}
		seen[o.resp.IPs[0]] = handle
	}
	if succeeded < n-n/3 {
		t.Errorf("%d of %d ADDs succeeded, want at least %d", succeeded, n, n-n/3)
	}
	rep, err := s.ipam.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Allocations != succeeded {
		t.Errorf("ipam check: %d allocations (want %d), problems %+v", rep.Allocations, succeeded, rep.Problems)
	}
	for _, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.svc.Del(ctx, &wire.DelRequest{Attachment: o.att}); err != nil {
				t.Errorf("DEL %s: %v", o.att.ContainerID, err)
			}
		}()
	}
	wg.Wait()
	rep, err = s.ipam.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Allocations != 0 {
		t.Errorf("after DEL: %d allocations, problems %+v", rep.Allocations, rep.Problems)
	}
}
