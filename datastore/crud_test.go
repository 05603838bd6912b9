package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/google/go-cmp/cmp"
)

// newObj returns an object of kind k named name, in namespace ns when k is
// namespaced, with one label.
func newObj(k api.KindInfo, ns, name string) api.Object {
	o := k.New()
	o.SetName(name)
	if k.Namespaced {
		o.SetNamespace(ns)
	}
	o.SetLabels(map[string]string{"app": "a"})
	return o
}

func TestCRUDEveryKind(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	for _, k := range api.Kinds() {
		t.Run(k.Kind, func(t *testing.T) {
			obj := newObj(k, "ns1", "obj-1")
			created, err := c.Create(ctx, obj)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if created.GetResourceVersion() == "" || created.GetUID() == "" {
				t.Fatalf("created object lacks resourceVersion/uid: %+v", created)
			}
			if _, err := c.Create(ctx, newObj(k, "ns1", "obj-1")); !errors.Is(err, datastore.ErrAlreadyExists) {
				t.Fatalf("second Create: %v, want ErrAlreadyExists", err)
			}

			got, err := c.Get(ctx, k, created.GetNamespace(), "obj-1")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(created, got); diff != "" {
				t.Fatalf("Get differs from created (-created +got):\n%s", diff)
			}
			if gvk := got.GetObjectKind().GroupVersionKind(); gvk.Kind == "" {
				t.Errorf("decoded object has no kind")
			}

			// CAS update with the current revision, then a stale one.
			stale := got.GetResourceVersion()
			got.SetLabels(map[string]string{"app": "b"})
			updated, err := c.Update(ctx, got)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if updated.GetResourceVersion() == stale {
				t.Fatalf("revision did not change on update")
			}
			old := newObj(k, "ns1", "obj-1")
			old.SetResourceVersion(stale)
			if _, err := c.Update(ctx, old); !errors.Is(err, datastore.ErrConflict) {
				t.Fatalf("stale Update: %v, want ErrConflict", err)
			}
			reread, _ := c.Get(ctx, k, created.GetNamespace(), "obj-1")
			if reread.GetLabels()["app"] != "b" {
				t.Fatalf("stale update overwrote the value: labels %v", reread.GetLabels())
			}

			// A second object, in another namespace for namespaced kinds.
			if _, err := c.Create(ctx, newObj(k, "ns2", "obj-2")); err != nil {
				t.Fatalf("Create obj-2: %v", err)
			}
			list, _, err := c.List(ctx, k, datastore.ListOptions{})
			if err != nil || len(list) != 2 {
				t.Fatalf("List = %d objects, %v; want 2", len(list), err)
			}
			if k.Namespaced {
				list, _, err = c.List(ctx, k, datastore.ListOptions{Namespace: "ns2"})
				if err != nil || len(list) != 1 || list[0].GetName() != "obj-2" {
					t.Fatalf("List ns2 = %v, %v; want obj-2 only", names(list), err)
				}
			}
			list, _, err = c.List(ctx, k, datastore.ListOptions{NamePrefix: "obj-1"})
			if err != nil || len(list) != 1 || list[0].GetName() != "obj-1" {
				t.Fatalf("List prefix obj-1 = %v, %v; want obj-1 only", names(list), err)
			}

			// Conditional delete: stale revision refused, current accepted.
			if _, err := c.Delete(ctx, k, created.GetNamespace(), "obj-1", stale); !errors.Is(err, datastore.ErrConflict) {
				t.Fatalf("Delete with stale revision: %v, want ErrConflict", err)
			}
			deleted, err := c.Delete(ctx, k, created.GetNamespace(), "obj-1", updated.GetResourceVersion())
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if deleted.GetLabels()["app"] != "b" {
				t.Errorf("Delete returned %v, want the deleted object", deleted.GetLabels())
			}
			if _, err := c.Get(ctx, k, created.GetNamespace(), "obj-1"); !errors.Is(err, datastore.ErrNotFound) {
				t.Fatalf("Get after delete: %v, want ErrNotFound", err)
			}
			if _, err := c.Delete(ctx, k, created.GetNamespace(), "obj-1", ""); !errors.Is(err, datastore.ErrNotFound) {
				t.Fatalf("second Delete: %v, want ErrNotFound", err)
			}
			if _, err := c.Update(ctx, updated); !errors.Is(err, datastore.ErrNotFound) {
				t.Fatalf("Update of deleted: %v, want ErrNotFound", err)
			}
		})
	}
}

func names(objs []api.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

func TestUpdateNeedsRevision(t *testing.T) {
	m := datastoretest.New(t)
	k := kind(t, "Tier")
	if _, err := m.Client.Create(context.Background(), newObj(k, "", "t")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client.Update(context.Background(), newObj(k, "", "t")); !errors.Is(err, datastore.ErrInvalid) {
		t.Fatalf("Update without resourceVersion: %v, want ErrInvalid", err)
	}
}

// TestCASConcurrentWriters runs read-modify-write increments from many
// goroutines on one object. Every successful write must be counted exactly
// once: a lost update would show as a final count below the successes.
func TestCASConcurrentWriters(t *testing.T) {
	m := datastoretest.New(t)
	ctx := context.Background()
	k := kind(t, "GlobalNetworkSet")
	if _, err := m.Client.Create(ctx, newObj(k, "", "counter")); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 8, 15
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes int
		conflicts int
	)
	for w := range writers {
		c := m.Connect(datastore.Config{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; {
				obj, err := c.Get(ctx, k, "", "counter")
				if err != nil {
					t.Errorf("writer %d: Get: %v", w, err)
					return
				}
				labels := obj.GetLabels()
				n := 0
				fmt.Sscan(labels["n"], &n)
				labels["n"] = fmt.Sprint(n + 1)
				obj.SetLabels(labels)
				_, err = c.Update(ctx, obj)
				mu.Lock()
				switch {
				case err == nil:
					successes++
					i++
				case errors.Is(err, datastore.ErrConflict):
					conflicts++
				default:
					t.Errorf("writer %d: Update: %v", w, err)
					mu.Unlock()
					return
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	obj, err := m.Client.Get(ctx, k, "", "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := obj.GetLabels()["n"], fmt.Sprint(writers*perWriter); got != want || successes != writers*perWriter {
		t.Fatalf("counter = %s after %d successful CAS writes; want %s", got, successes, want)
	}
	if conflicts == 0 {
		t.Logf("no conflicts happened; the race was not exercised this run")
	}
}

func TestConnectUnreachableNamesEndpoint(t *testing.T) {
	ports, err := datastore.FreeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	ep := datastore.LoopbackURL(ports[0])
	ctx := context.Background()
	_, err = datastore.New(ctx, datastore.Config{Endpoints: []string{ep}, DialTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatalf("New(%s) succeeded with nothing listening", ep)
	}
	if want := ep; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the endpoint %s", err, want)
	}
}
