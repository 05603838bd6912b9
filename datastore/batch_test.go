package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gnp(name, sel string) *api.GlobalNetworkPolicy {
	return &api.GlobalNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       api.GlobalNetworkPolicySpec{Selector: sel},
	}
}

func actions(rs []datastore.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d %s %s %s", r.Index, r.Kind, r.Name, r.Action))
	}
	return out
}

func TestWriteBatchActions(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()

	res, err := c.WriteBatch(ctx, datastore.OpApply, []api.Object{gnp("a", "x == '1'"), gnp("b", "x == '2'")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0 GlobalNetworkPolicy a created", "1 GlobalNetworkPolicy b created"}, actions(res)); diff != "" {
		t.Fatalf("first apply (-want +got):\n%s", diff)
	}
	if res[0].Object.GetResourceVersion() == "" {
		t.Fatalf("applied object has no resourceVersion")
	}
	res, err = c.WriteBatch(ctx, datastore.OpApply, []api.Object{gnp("a", "x == '1'"), gnp("b", "x == 'changed'")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0 GlobalNetworkPolicy a unchanged", "1 GlobalNetworkPolicy b configured"}, actions(res)); diff != "" {
		t.Fatalf("second apply (-want +got):\n%s", diff)
	}
	// Apply keeps the stored UID.
	a1, _ := c.Get(ctx, kind(t, "gnp"), "", "a")
	if a1.GetUID() == "" || a1.GetUID() != res[0].Object.GetUID() {
		t.Errorf("UID not kept: stored %q, returned %q", a1.GetUID(), res[0].Object.GetUID())
	}

	// Create of an existing document fails and writes nothing, even the
	// new document listed before it.
	_, err = c.WriteBatch(ctx, datastore.OpCreate, []api.Object{gnp("c", ""), gnp("a", "")})
	var be *datastore.BatchError
	if !errors.As(err, &be) || be.Doc != 1 || !errors.Is(err, datastore.ErrAlreadyExists) || len(be.Written) != 0 {
		t.Fatalf("create with an existing doc: %v; want BatchError on document index 1, ErrAlreadyExists", err)
	}
	if want := `document 2 (GlobalNetworkPolicy "a")`; err.Error()[:len(want)] != want {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if _, err := c.Get(ctx, kind(t, "gnp"), "", "c"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("document before the failing one was written: %v", err)
	}

	// Replace of a missing document fails.
	if _, err = c.WriteBatch(ctx, datastore.OpReplace, []api.Object{gnp("a", ""), gnp("zzz", "")}); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("replace missing: %v, want ErrNotFound", err)
	}
	// A stale resourceVersion in a document is a conflict.
	stale := gnp("a", "x == 'new'")
	stale.ResourceVersion = "1"
	if _, err = c.WriteBatch(ctx, datastore.OpApply, []api.Object{stale}); !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("apply with stale resourceVersion: %v, want ErrConflict", err)
	}
	// Duplicates are rejected up front.
	if _, err = c.WriteBatch(ctx, datastore.OpApply, []api.Object{gnp("d", ""), gnp("d", "")}); !errors.As(err, &be) || be.Doc != 1 {
		t.Fatalf("duplicate documents: %v, want error on document index 1", err)
	}

	res, err = c.WriteBatch(ctx, datastore.OpDelete, []api.Object{gnp("a", ""), gnp("b", "")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0 GlobalNetworkPolicy a deleted", "1 GlobalNetworkPolicy b deleted"}, actions(res)); diff != "" {
		t.Fatalf("delete (-want +got):\n%s", diff)
	}
	if res[1].Object == nil || res[1].Object.(*api.GlobalNetworkPolicy).Spec.Selector != "x == 'changed'" {
		t.Errorf("delete did not return the deleted object: %+v", res[1].Object)
	}
}

func TestKubernetesNetworkPolicyStoredWithTranslation(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: "prod"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	res, err := c.WriteBatch(ctx, datastore.OpApply, []api.Object{np})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0 KubernetesNetworkPolicy deny-all created"}, actions(res)); diff != "" {
		t.Fatalf("apply (-want +got):\n%s", diff)
	}
	orig, err := c.Get(ctx, kind(t, "KubernetesNetworkPolicy"), "prod", "deny-all")
	if err != nil {
		t.Fatalf("original not stored: %v", err)
	}
	if _, ok := orig.(*networkingv1.NetworkPolicy); !ok {
		t.Fatalf("original decoded as %T", orig)
	}
	tr, err := c.Get(ctx, kind(t, "NetworkPolicy"), "prod", "knp.default.deny-all")
	if err != nil {
		t.Fatalf("translation not stored: %v", err)
	}
	want, _ := api.TranslateNetworkPolicy(np)
	if diff := cmp.Diff(want.Spec, tr.(*api.NetworkPolicy).Spec); diff != "" {
		t.Errorf("stored translation differs (-want +got):\n%s", diff)
	}
	// Re-applying is unchanged; deleting removes both.
	res, err = c.WriteBatch(ctx, datastore.OpApply, []api.Object{np.DeepCopy()})
	if err != nil || res[0].Action != datastore.ActionUnchanged {
		t.Fatalf("re-apply: %v %v, want unchanged", actions(res), err)
	}
	if _, err := c.WriteBatch(ctx, datastore.OpDelete, []api.Object{np.DeepCopy()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, kind(t, "NetworkPolicy"), "prod", "knp.default.deny-all"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("translation survived the delete: %v", err)
	}
}

// TestChunkedBatchReportsWritten makes the third transaction of a batch
// fail and checks that exactly the documents of the first two are stored
// and reported.
func TestChunkedBatchReportsWritten(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Connect(datastore.Config{MaxTxnOps: 10})
	ctx := context.Background()
	var objs []api.Object
	for i := range 35 {
		objs = append(objs, gnp(fmt.Sprintf("p-%03d", i), ""))
	}
	boom := errors.New("boom")
	datastore.SetBeforeChunk(c, func(chunk int) error {
		if chunk == 2 {
			return boom
		}
		return nil
	})
	_, err := c.WriteBatch(ctx, datastore.OpApply, objs)
	var be *datastore.BatchError
	if !errors.As(err, &be) || !errors.Is(err, boom) {
		t.Fatalf("got %v, want the chunk failure", err)
	}
	if be.Doc != 20 || len(be.Written) != 20 || be.Written[19].Name != "p-019" {
		t.Fatalf("failure at doc %d with %d written; want doc 20 with 20 written", be.Doc, len(be.Written))
	}
	list, _, err := c.List(ctx, kind(t, "gnp"), datastore.ListOptions{})
	if err != nil || len(list) != 20 {
		t.Fatalf("stored %d objects (%v), want the 20 reported", len(list), err)
	}
	// Without the failure, the rest goes in and the first 20 are unchanged.
	datastore.SetBeforeChunk(c, nil)
	res, err := c.WriteBatch(ctx, datastore.OpApply, objs)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[datastore.Action]int{}
	for _, r := range res {
		counts[r.Action]++
	}
	if counts[datastore.ActionUnchanged] != 20 || counts[datastore.ActionCreated] != 15 {
		t.Fatalf("second apply actions %v, want 20 unchanged, 15 created", counts)
	}
}

// TestLargeApply writes 10,000 policies through the default etcd limits.
func TestLargeApply(t *testing.T) {
	if testing.Short() {
		t.Skip("large apply skipped in -short mode")
	}
	m := datastoretest.New(t)
	ctx := context.Background()
	objs := manyPolicies(10000)
	res, err := m.Client.WriteBatch(ctx, datastore.OpApply, objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(objs) {
		t.Fatalf("%d results for %d documents", len(res), len(objs))
	}
	list, _, err := m.Client.List(ctx, kind(t, "NetworkPolicy"), datastore.ListOptions{})
	if err != nil || len(list) != len(objs) {
		t.Fatalf("listed %d policies (%v), want %d", len(list), err, len(objs))
	}
}

func manyPolicies(n int) []api.Object {
	objs := make([]api.Object, n)
	order := 100.0
	for i := range objs {
		objs[i] = &api.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("allow-%05d", i), Namespace: fmt.Sprintf("ns-%d", i%20)},
			Spec: api.NetworkPolicySpec{
				Tier:     "default",
				Order:    &order,
				Selector: fmt.Sprintf("app == 'svc-%d'", i),
				Types:    []api.PolicyType{api.PolicyTypeIngress},
				Ingress: []api.Rule{{
					Action:      api.Allow,
					Source:      api.EntityRule{Selector: "role == 'frontend'"},
					Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(6379)}},
				}},
			},
		}
	}
	return objs
}

func isErr(err, target error) bool { return errors.Is(err, target) }

// A batch's write is a compare-and-swap on the revision its plan read. Each
// case races the batch: another writer changes the key right after that
// read, so the swap fails, the batch plans again and its outcome must be
// the one a read after that write gives.
func TestWriteBatchLosesRace(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	raw := datastore.Etcd(c).(*clientv3.Client)
	key, err := datastore.Key(kind(t, "gnp"), "", "a")
	if err != nil {
		t.Fatal(err)
	}
	put := func(sel string) func() error {
		return func() error {
			v, err := datastore.Encode(gnp("a", sel))
			if err != nil {
				return err
			}
			_, err = raw.Put(ctx, key, string(v))
			return err
		}
	}
	del := func() error { _, err := raw.Delete(ctx, key); return err }

	for _, tc := range []struct {
		name    string
		stored  bool // "a" exists (selector "stored") before the batch
		behind  func() error
		op      datastore.Op
		withRev bool // the object carries the stored resourceVersion
		want    string
		wantErr error
		wantSel string // stored selector afterwards, "" if absent
	}{
		{name: "apply, deleted behind", stored: true, behind: del, op: datastore.OpApply, want: "created", wantSel: "mine"},
		{name: "apply, created behind", behind: put("behind"), op: datastore.OpApply, want: "configured", wantSel: "mine"},
		{name: "create, created behind", behind: put("behind"), op: datastore.OpCreate, wantErr: datastore.ErrAlreadyExists, wantSel: "behind"},
		{name: "replace, deleted behind", stored: true, behind: del, op: datastore.OpReplace, wantErr: datastore.ErrNotFound},
		{name: "delete, deleted behind", stored: true, behind: del, op: datastore.OpDelete, wantErr: datastore.ErrNotFound},
		{name: "apply at a revision, changed behind", stored: true, behind: put("behind"), op: datastore.OpApply, withRev: true, wantErr: datastore.ErrConflict, wantSel: "behind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := raw.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			obj := gnp("a", "mine")
			if tc.stored {
				res, err := c.WriteBatch(ctx, datastore.OpCreate, []api.Object{gnp("a", "stored")})
				if err != nil {
					t.Fatal(err)
				}
				if tc.withRev {
					obj.ResourceVersion = res[0].Object.GetResourceVersion()
				}
			}
			ran := 0
			datastore.SetAfterRead(c, func() {
				if ran++; ran == 1 {
					if err := tc.behind(); err != nil {
						t.Error(err)
					}
				}
			})
			defer datastore.SetAfterRead(c, nil)

			res, err := c.WriteBatch(ctx, tc.op, []api.Object{obj})
			if ran != 2 {
				t.Fatalf("the batch planned %d times, want 2 (the swap on the first plan must fail)", ran)
			}
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case string(res[0].Action) != tc.want:
				t.Fatalf("action %q, want %q", res[0].Action, tc.want)
			}
			got, err := c.Get(ctx, kind(t, "gnp"), "", "a")
			switch {
			case tc.wantSel == "":
				if !errors.Is(err, datastore.ErrNotFound) {
					t.Fatalf("stored afterwards: %v, %v; want none", got, err)
				}
			case err != nil:
				t.Fatal(err)
			case got.(*api.GlobalNetworkPolicy).Spec.Selector != tc.wantSel:
				t.Fatalf("stored selector %q, want %q", got.(*api.GlobalNetworkPolicy).Spec.Selector, tc.wantSel)
			}
		})
	}
}
