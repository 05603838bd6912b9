package ipam

import (
	"context"
	"errors"
	"testing"

	"github.com/brindle-net/brindle/datastore/datastoretest"
)

// storeContract checks the conditional-write semantics every Store must
// have; it runs against MemStore and EtcdStore.
func storeContract(t *testing.T, s Store) {
	ctx := context.Background()
	const k = "/calico/ipam/v2/handle/contract"
	if _, _, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	r1, err := s.Create(ctx, k, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, k, []byte("b")); !errors.Is(err, ErrExists) {
		t.Fatalf("create existing: %v, want ErrExists", err)
	}
	r2, err := s.Update(ctx, k, []byte("b"), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: rev %d (was %d), %v", r2, r1, err)
	}
	if _, err := s.Update(ctx, k, []byte("c"), r1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, k, r1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale delete: %v, want ErrConflict", err)
	}
	v, rev, err := s.Get(ctx, k)
	if err != nil || string(v) != "b" || rev != r2 {
		t.Fatalf("get: %q rev %d (want %d), %v", v, rev, r2, err)
	}
	if _, err := s.Create(ctx, k+"2", []byte("x")); err != nil {
		t.Fatal(err)
	}
	kvs, err := s.List(ctx, "/calico/ipam/v2/handle/")
	if err != nil || len(kvs) != 2 || kvs[0].Key != k || kvs[1].Key != k+"2" {
		t.Fatalf("list: %v, %v", kvs, err)
	}
	if err := s.Delete(ctx, k, r2); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, k, r2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete gone: %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, k, []byte("z"), r2); !errors.Is(err, ErrConflict) {
		t.Fatalf("update gone: %v, want ErrConflict", err)
	}

	// Transactions: all or nothing on every condition.
	ts, ok := s.(TxnStore)
	if !ok {
		t.Fatalf("%T is not a TxnStore", s)
	}
	_, r3, err := s.Get(ctx, k+"2")
	if err != nil {
		t.Fatal(err)
	}
	puts := []TxnPut{{Key: k + "2", Value: []byte("y")}, {Key: k + "3", Value: []byte("new")}}
	for _, bad := range [][]TxnCond{
		{{Key: k + "2", Revision: r3 + 100}, {Key: k + "3"}}, // stale revision
		{{Key: k + "2", Revision: r3}, {Key: k + "2"}},       // "absent" but exists
		{{Key: k + "missing", Revision: r3}, {Key: k + "3"}}, // revision of a missing key
	} {
		if ok, err := ts.Txn(ctx, bad, puts); ok || err != nil {
			t.Fatalf("txn with conditions %v: ok %v, %v; want a failed condition", bad, ok, err)
		}
	}
	if _, _, err := s.Get(ctx, k+"3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed txns wrote %s: %v", k+"3", err)
	}
	if ok, err := ts.Txn(ctx, []TxnCond{{Key: k + "2", Revision: r3}, {Key: k + "3"}}, puts); !ok || err != nil {
		t.Fatalf("txn: ok %v, %v", ok, err)
	}
	for key, want := range map[string]string{k + "2": "y", k + "3": "new"} {
		if v, rev, err := s.Get(ctx, key); err != nil || string(v) != want || rev <= r3 {
			t.Fatalf("after txn %s = %q rev %d, %v; want %q", key, v, rev, err, want)
		}
	}
}

func TestStoreContractMemStore(t *testing.T) { storeContract(t, NewMemStore()) }

func TestStoreContractEtcd(t *testing.T) {
	storeContract(t, NewEtcdStore(datastoretest.New(t).Client))
}

func TestConcurrencyEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd member")
	}
	runConcurrency(t, func(t *testing.T) Store { return NewEtcdStore(datastoretest.New(t).Client) }, 5, 100, 10, 1)
}

// TestConcurrencyBatchedEtcd: batched and single assignments from five
// hosts race on real etcd.
func TestConcurrencyBatchedEtcd(t *testing.T) {
	runConcurrency(t, func(t *testing.T) Store { return NewEtcdStore(datastoretest.New(t).Client) }, 5, 100, 4, 16)
}
